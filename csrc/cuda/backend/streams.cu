/* streams.cu - ops.h's export_to: a consumer's stream (DLPack's __dlpack__(stream=...)) made to wait
 * for our work with an event, never a host wait, so GPU outputs can be handed over mid-pipeline. */
#include "cuda_ctx.h"

/* Every context's stream is blocking (context.cu), and work on the legacy default stream starts
 * only after all earlier work on blocking streams: an event recorded there completes after every
 * op issued so far on any of our contexts, whichever session wrote the array. */
int msam_cuda_export_to(msam_ctx *ctx, uintptr_t consumer_stream) {
    (void)ctx;
    cudaEvent_t ev = NULL;
    cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventRecord(ev, (cudaStream_t)0);
    if (e == cudaSuccess) e = cudaStreamWaitEvent((cudaStream_t)consumer_stream, ev, 0);
    if (ev) cudaEventDestroy(ev); /* released once it has completed; the wait stays enqueued */
    return (int)e;
}
