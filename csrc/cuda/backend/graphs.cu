/* graphs.cu - ops.h's replay for the CUDA backend: a bracketed op sequence is captured from the
 * context's stream into a CUDA graph the first time for its key and launched as one graph after. */
#include <stdlib.h>

#include "cuda_ctx.h"

/* A context's recordings: a small table searched linearly (a session sees a handful of prompt
 * shapes); when full, the oldest is dropped. */
enum { MSAM_CUDA_MAX_GRAPHS = 32 };

struct msam_cuda_graphs {
    uint64_t key[MSAM_CUDA_MAX_GRAPHS];
    cudaGraphExec_t exec[MSAM_CUDA_MAX_GRAPHS];
    int count, next; /* slots used; the slot the next recording replaces once all are used */
    int off;         /* a capture failed in this context: record nothing more, run ops plainly */
};

static cudaGraphExec_t find(const struct msam_cuda_graphs *g, uint64_t key) {
    for (int i = 0; i < g->count; i++)
        if (g->key[i] == key) return g->exec[i];
    return NULL;
}

void msam_cuda_replay_begin(msam_ctx *ctx, uint64_t key) {
    if (ctx->replaying || ctx->recording) return; /* not nested: the outer bracket decides */
    if (!ctx->graphs && !(ctx->graphs = (struct msam_cuda_graphs *)calloc(1, sizeof *ctx->graphs))) return;
    if (ctx->graphs->off || ctx->error) return; /* plain run */
    cudaGraphExec_t exec = find(ctx->graphs, key);
    if (exec) {
        const cudaError_t e = cudaGraphLaunch(exec, ctx->stream);
        if (e == cudaSuccess) ctx->replaying = 1, ctx->counters.replays++;
        else msam_cuda_record(ctx, (int)e); /* the ops then run plainly, and the error stands */
        return;
    }
    /* thread-local: other threads' unrelated CUDA calls do not invalidate this capture */
    if (cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess) ctx->recording = 1;
    else ctx->graphs->off = 1;
}

/* Keep exec under key, replacing the oldest recording when the table is full. */
static void keep(struct msam_cuda_graphs *g, uint64_t key, cudaGraphExec_t exec) {
    int slot;
    if (g->count < MSAM_CUDA_MAX_GRAPHS) {
        slot = g->count++;
    } else {
        slot = g->next;
        cudaGraphExecDestroy(g->exec[slot]);
        g->next = (slot + 1) % MSAM_CUDA_MAX_GRAPHS;
    }
    g->key[slot] = key;
    g->exec[slot] = exec;
}

int msam_cuda_replay_end(msam_ctx *ctx, uint64_t key) {
    if (ctx->replaying) {
        ctx->replaying = 0;
        return 0;
    }
    if (!ctx->recording) return 0; /* the ops ran plainly */
    ctx->recording = 0;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture(ctx->stream, &graph);
    if (e == cudaSuccess && graph) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e == cudaSuccess && exec) e = cudaGraphLaunch(exec, ctx->stream);
    if (e != cudaSuccess || !exec) {
        /* nothing ran: the caller issues the ops again, and this context stops recording */
        if (exec) cudaGraphExecDestroy(exec);
        cudaGetLastError(); /* a failed capture's error is not sticky: clear it */
        ctx->graphs->off = 1;
        return 1;
    }
    keep(ctx->graphs, key, exec);
    return 0;
}

void msam_cuda_graphs_free(msam_ctx *ctx) {
    if (!ctx->graphs) return;
    for (int i = 0; i < ctx->graphs->count; i++) cudaGraphExecDestroy(ctx->graphs->exec[i]);
    free(ctx->graphs);
    ctx->graphs = NULL;
}
