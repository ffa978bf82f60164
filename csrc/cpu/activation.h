/* activation.h - the constants of the one vector GELU every SIMD kernel of the CPU uses (the
 * scalar forms, exact erf GELU as torch's default, are the references' in ref/ref.h). */
#ifndef MSAM_CPU_ACTIVATION_H
#define MSAM_CPU_ACTIVATION_H
#include <math.h>
#include "../ref/ref.h" /* the scalar msam_gelu / msam_apply_act */


/* Vector GELU, 0.5 x (1 + erf(x / sqrt 2)), computes h = 1 + erf(z) = 2 - erfc(|z|) (z >= 0) or
 * erfc(|z|) (z < 0), so the negative tail has no cancellation. erfc(t) = 2^G(t) for t = |z| in
 * [0, 4], G = t (G1 + G2 t + ... + G8 t^7) a minimax fit of log2 erfc weighted by erfc (abs.
 * error of h 1.6e-8); 2^G = 2^f 2^n, f in [-1/2, 1/2] by a degree-6 minimax (rel. 1.9e-9), n into
 * the exponent field. t >= 4 gives erfc = 0 (erfc(4) = 1.5e-8; erff rounds to 1 there too). One
 * path, no division, Estrin evaluation for a short dependency chain. Checked on every float in
 * [-30, 30]: |error| <= 1.2e-7 max(1, |x|) against double precision (msam_gelu: 1.1e-7). */
#define MSAM_GELU_G1 -1.627908587e+00f
#define MSAM_GELU_G2 -9.184163809e-01f
#define MSAM_GELU_G3 -1.484816074e-01f
#define MSAM_GELU_G4 2.825368010e-02f
#define MSAM_GELU_G5 -7.746291230e-04f
#define MSAM_GELU_G6 -1.489441958e-03f
#define MSAM_GELU_G7 4.455076996e-04f
#define MSAM_GELU_G8 -4.535860353e-05f
#define MSAM_EXP2_E0 1.000000000e+00f
#define MSAM_EXP2_E1 6.931471825e-01f
#define MSAM_EXP2_E2 2.402264625e-01f
#define MSAM_EXP2_E3 5.550328642e-02f
#define MSAM_EXP2_E4 9.618489072e-03f
#define MSAM_EXP2_E5 1.339993090e-03f
#define MSAM_EXP2_E6 1.534581243e-04f

#endif
