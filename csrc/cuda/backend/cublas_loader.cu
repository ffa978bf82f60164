/* cublas_loader.cu - finds libcublas at run time (dlopen) and resolves the entry points the backend
 * calls, so a CUDA build imports and runs on the CPU where cuBLAS is absent. Empty in the
 * emulation build, which links its own cuBLAS (emu/cublas_emu.cpp). */
#if !defined(MSAM_CUDA_EMULATION)
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cublas_loader.h"

/* The cuBLAS major the runtime we link was released with (13000 -> 13): tried first. */
#define OWN_MAJOR (CUDART_VERSION / 1000)

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static msam_cublas_api g_api;
static const msam_cublas_api *g_table; /* &g_api once complete; read with acquire */

const msam_cublas_api *msam_cublas_table(void) { return __atomic_load_n(&g_table, __ATOMIC_ACQUIRE); }

/* Appends formatted text to buf (size n) at *len, truncating at the end. */
static void append(char *buf, size_t n, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    const int w = vsnprintf(buf + *len, n - *len, fmt, ap);
    va_end(ap);
    if (w > 0) *len = *len + (size_t)w < n ? *len + (size_t)w : n - 1;
}

/* The folder holding this extension's package folder (site-packages for an installed copy, found
 * by dladdr on one of our own functions), "" if unknown. */
static void site_dir(char *site, size_t n) {
    Dl_info info;
    site[0] = '\0';
    if (!dladdr((void *)&msam_cublas_load, &info) || !info.dli_fname) return;
    char path[PATH_MAX];
    if (!realpath(info.dli_fname, path)) snprintf(path, sizeof path, "%s", info.dli_fname);
    for (int up = 0; up < 2; up++) { /* .../site-packages/mobile_sam_c/_C.so -> .../site-packages */
        char *slash = strrchr(path, '/');
        if (!slash) return;
        *slash = '\0';
    }
    snprintf(site, n, "%s", path[0] ? path : "/");
}

/* Resolve every entry point from lib into api; 0, or -1 with the missing name. */
static int resolve(void *lib, msam_cublas_api *api, const char **missing) {
    struct {
        const char *name;
        void **slot;
    } want[] = {{"cublasCreate_v2", (void **)&api->create},
                {"cublasDestroy_v2", (void **)&api->destroy},
                {"cublasSetStream_v2", (void **)&api->set_stream},
                {"cublasSetMathMode", (void **)&api->set_math_mode},
                {"cublasSgemm_v2", (void **)&api->sgemm},
                {"cublasSgemmStridedBatched", (void **)&api->sgemm_strided_batched}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!(*want[i].slot = dlsym(lib, want[i].name))) {
            *missing = want[i].name;
            return -1;
        }
    }
    return 0;
}

/* The candidates, in order: $MOBILE_SAM_C_CUBLAS; our major by the loader's search (LD_LIBRARY_PATH,
 * the ld.so cache, a copy already loaded, e.g. by torch); the nvidia-cublas wheel installed next to
 * this package (site-packages/nvidia/cu13/lib from CUDA 13 on, nvidia/cublas/lib before); the
 * build's toolkit; then the other major the same ways, and the unversioned development name. */
enum { MAX_CANDIDATES = 12, PATH_LEN = PATH_MAX };

static const int MAJORS[2] = {OWN_MAJOR, OWN_MAJOR == 13 ? 12 : 13};

static int candidates(const char *site, char out[][PATH_LEN]) {
    int n = 0;
    const char *env = getenv("MOBILE_SAM_C_CUBLAS");
    if (env && *env) snprintf(out[n++], PATH_LEN, "%s", env);
    for (int i = 0; i < 2; i++) {
        const int m = MAJORS[i];
        snprintf(out[n++], PATH_LEN, "libcublas.so.%d", m);
        if (site[0]) {
            snprintf(out[n++], PATH_LEN, "%s/nvidia/cu%d/lib/libcublas.so.%d", site, m, m);
            snprintf(out[n++], PATH_LEN, "%s/nvidia/cublas/lib/libcublas.so.%d", site, m);
        }
#ifdef MSAM_CUDA_TOOLKIT_LIB
        snprintf(out[n++], PATH_LEN, "%s/libcublas.so.%d", MSAM_CUDA_TOOLKIT_LIB, m);
#endif
    }
    snprintf(out[n++], PATH_LEN, "libcublas.so");
    return n;
}

/* What was tried, in a sentence that fits an msam_error (the paths would not). */
static void explain(char *why, size_t n, const char *site, const char *failure) {
    size_t len = 0;
    why[0] = '\0';
    append(why, n, &len, "cuBLAS could not be loaded (pip install nvidia-cublas, or set MOBILE_SAM_C_CUBLAS to a "
                         "libcublas.so); ");
    if (failure[0]) append(why, n, &len, "%s; ", failure);
    append(why, n, &len, "tried ");
    const char *env = getenv("MOBILE_SAM_C_CUBLAS");
    if (env && *env) append(why, n, &len, "%s, ", env);
    append(why, n, &len, "libcublas.so.%d and .%d on the library path", MAJORS[0], MAJORS[1]);
    if (site[0]) append(why, n, &len, ", in %s/nvidia/{cu%d/lib,cublas/lib}", site, MAJORS[0]);
#ifdef MSAM_CUDA_TOOLKIT_LIB
    append(why, n, &len, ", in %s", MSAM_CUDA_TOOLKIT_LIB);
#endif
    append(why, n, &len, " and libcublas.so)");
}

int msam_cublas_load(char *why, size_t why_size) {
    if (msam_cublas_table()) return 0;
    pthread_mutex_lock(&g_lock);
    int loaded = g_table != NULL;
    static char tried[MAX_CANDIDATES][PATH_LEN]; /* under g_lock */
    char site[PATH_LEN - 64];
    site_dir(site, sizeof site);
    char failure[400] = ""; /* a library that exists but will not load is the useful clue */
    const int n = loaded ? 0 : candidates(site, tried);
    for (int i = 0; i < n && !loaded; i++) {
        void *lib = dlopen(tried[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char *e = dlerror();
            if (e && !strstr(e, "No such file") && !failure[0]) snprintf(failure, sizeof failure, "%s", e);
            continue;
        }
        msam_cublas_api api;
        const char *missing = NULL;
        if (resolve(lib, &api, &missing)) {
            if (!failure[0]) snprintf(failure, sizeof failure, "%s has no %s", tried[i], missing);
            dlclose(lib);
            continue;
        }
        g_api = api; /* the library stays loaded for the life of the process */
        __atomic_store_n(&g_table, &g_api, __ATOMIC_RELEASE);
        loaded = 1;
    }
    if (!loaded && why && why_size) explain(why, why_size, site, failure);
    pthread_mutex_unlock(&g_lock);
    return loaded ? 0 : -1;
}
#endif
