/* avx512_emulation.h - test builds only: the AVX-512F intrinsics gemm_avx512.c uses, over SIMDe's
 * portable types, so CPUs without AVX-512 can run and check that kernel (MSAM_EMULATE_AVX512). */
#ifndef MSAM_CPU_AVX512_EMULATION_H
#define MSAM_CPU_AVX512_EMULATION_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

/* What SIMDe 0.7 (Debian 12) lacks, with Intel's semantics: masked-off lanes are neither read nor
 * written (that is what makes the kernel's column tails safe, so the emulation keeps it). The
 * native names may already be macros when a newer SIMDe provides them, hence the #undefs. */
static __attribute__((noinline)) simde__m512i msam_emu_cvtps_epi32(simde__m512 a) {
    simde__m512_private p = simde__m512_to_private(a);
    simde__m512i_private r;
    for (int i = 0; i < 16; i++) r.i32[i] = (int32_t)lrintf(p.f32[i]); /* MXCSR: nearest */
    return simde__m512i_from_private(r);
}

static __attribute__((noinline)) simde__m512 msam_emu_maskz_loadu_ps(simde__mmask16 k, const float *mem) {
    simde__m512_private r;
    for (int i = 0; i < 16; i++) r.f32[i] = (k >> i) & 1 ? mem[i] : 0.0f;
    return simde__m512_from_private(r);
}

static __attribute__((noinline)) void msam_emu_mask_storeu_ps(float *mem, simde__mmask16 k, simde__m512 a) {
    simde__m512_private p = simde__m512_to_private(a);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) mem[i] = p.f32[i];
}

/* The hardware faults on an aligned load from an address that is not 64-byte aligned, which
 * SIMDe would not notice; this build stops there instead, as the hardware would. */
static inline simde__m512 msam_emu_load_ps(const float *mem) {
    if ((uintptr_t)mem & 63) {
        fprintf(stderr, "avx512 emulation: _mm512_load_ps from %p, not 64-byte aligned\n", (const void *)mem);
        abort();
    }
    return simde_mm512_loadu_ps(mem);
}

#undef _mm512_load_ps
#undef _mm512_cvtps_epi32
#undef _mm512_maskz_loadu_ps
#undef _mm512_mask_storeu_ps
#define _mm512_load_ps(mem) msam_emu_load_ps(mem)
#define _mm512_cvtps_epi32(a) msam_emu_cvtps_epi32(a)
#define _mm512_maskz_loadu_ps(k, mem) msam_emu_maskz_loadu_ps((k), (mem))
#define _mm512_mask_storeu_ps(mem, k, a) msam_emu_mask_storeu_ps((mem), (k), (a))

#endif
