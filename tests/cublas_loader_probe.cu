/* cublas_loader_probe.cu - runs csrc/cuda/backend/cublas_loader.cu on its own for
 * tests/test_cuda_build.py: finding and resolving libcublas needs no GPU, so its search is tested here.
 *
 * Usage: cublas_loader_probe [PRELOAD]: with PRELOAD, that library is dlopen'ed first (as
 * mobile_sam_c/_cuda_libs.py does) and must then be found by its soname. Prints "loaded: <file the
 * entry points come from>" and exits 0, or "failed: <the loader's message>" and exits 1. */
#include <dlfcn.h>
#include <stdio.h>

#include "cuda/backend/cublas_loader.h"

int main(int argc, char **argv) {
    if (argc > 1 && !dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) {
        printf("preload failed: %s\n", dlerror());
        return 2;
    }
    char why[512];
    if (msam_cublas_load(why, sizeof why)) {
        printf("failed: %s\n", why);
        return 1;
    }
    const msam_cublas_api *t = msam_cublas_table();
    Dl_info info;
    if (!t || !t->create || !t->destroy || !t->set_stream || !t->set_math_mode || !t->sgemm ||
        !t->sgemm_strided_batched || !dladdr((void *)t->sgemm, &info) || !info.dli_fname) {
        printf("incomplete table\n");
        return 3;
    }
    printf("loaded: %s\n", info.dli_fname);
    return 0;
}
