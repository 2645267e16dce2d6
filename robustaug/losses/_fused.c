/*
 * Fused CPU kernels of robustaug.losses (float32, integer targets): the focal family (here), the
 * noise-robust Dice loss (further down, rf_dice) and the loss corrections (rf_correction).
 *
 * One call of rf_focal computes, for every element (a sample, or a voxel of a segmentation map),
 * the softmax of its logits, the per-element loss
 *
 *   l = a_f FL_y + a_n FL_y / S + a_nn (1 - f_y / S_f) + c (1 - p_y) + k0 + k1 (ca + cs p_y)^cq
 *       + a_h H(p) - a_m log p_max,
 *
 *   FL_k = -(1 - p_k)^gamma log p_k,  S = sum_k FL_k          (focal, NFL, NCE: Lin et al. 2017;
 *                                                              Ma et al. 2020)
 *   or FL_k = 1 - p_k^q                                       (NGCE, Ma et al. 2020)
 *   f_k = A - FL(max(log p_k, -A)),    S_f = sum_k f_k        (NNFL, NNCE: Ye et al. 2023)
 *   c (1 - p_y)                                               (MAE, RCE: Ghosh et al. 2017;
 *                                                              Wang et al. 2019)
 *   k0 + k1 (ca + cs p_y)^cq, or another column term          (GCE, AGCE, AUL, AEL, Taylor-CE,
 *                                                              truncated Lq: see colterm)
 *   H(p) = -sum_k p_k log p_k, -log p_max                     (soft / hard bootstrapping with
 *                                                              a_f FL_y, gamma = 0: Reed et al.
 *                                                              2015)
 *
 * and its gradient with respect to the logits, gz_k = w (G_k - p_k sum_j G_j), where G is the
 * gradient with respect to log p (the log-softmax Jacobian). With FL' = dFL/dlog p
 * (= -u^gamma (1 - gamma t), u = 1 - p, t = p log p / u, for the focal terms; -q p^q for NGCE's):
 *
 *   G_k = [k = y] C_y + D_1 nd_k + D_2 nd_k [log p_k >= -A],   nd = -FL',
 *   C_y = -a_f nd_y - a_n nd_y / S - a_nn nd_y [log p_y >= -A] / S_f - c p_y
 *         + (the column term's derivative with respect to log p_y),
 *   D_1 = a_n (FL_y / S) / S,  D_2 = a_nn (f_y / S_f) / S_f,
 * plus -a_h p_k (log p_k + 1) for every class and -a_m at the largest (its first index).
 *
 * Numerics as in the eager code: the largest class's u is the sum of the other classes' exp
 * (exact near saturation, where 1 - p cancels), its log p is -log1p of that sum, and its t, which
 * lies in [-1, 0], is clamped there. exp, expm1, log and 1/sqrt are evaluated by range reduction
 * and series or Newton steps (written to vectorise: no libm call in the loops); an exponent below
 * -87.3 gives 0 (p below the smallest normal float).
 *
 * Layouts: "rows" (the classes of an element contiguous: (N, C), or channels-last grids) and
 * "grid" ((N, C, V) with the classes V apart: contiguous segmentation maps). Grids and rows of
 * fewer than ROWS_MIN_C classes (through transposed blocks) are vectorised along the elements,
 * rows of more classes along the classes. Work is split over threads by elements: through OpenMP
 * when built with -fopenmp (torch's runtime, loaded before this library), else POSIX threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TINY 1.17549435e-38f /* FLT_MIN */
#define BLK 64               /* voxels per block of the grid layout */
#ifndef ROWS_MIN_C
#define ROWS_MIN_C 160 /* fewer classes than this: the rows layout goes through the grid code */
#endif

typedef struct {
    float gamma, a_f, a_n, a_nn, c, A, kc, fac;
    float k0, k1, ca, cs, cq, ctype; /* a column term of the label's p_y (see colterm) */
    float a_h, a_m; /* a_h H(p) = -a_h sum_k p_k log p_k, a_m (-log p_max) (bootstrapping) */
} prm_t;

typedef union {
    float f;
    int32_t i;
} fbits;

/* e^x for x <= 88 (0 below -87.3): x = n ln 2 + r, |r| <= ln2 / 2, e^r by its Taylor series to
 * degree 7 (truncation < 6e-9 relative), 2^n from the exponent bits. */
static inline __attribute__((always_inline)) float rexp(float x) {
    float xc = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - n * 0.693145751953125f;
    r = r - n * 1.42860676533e-6f;
    float q = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f +
              r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    fbits s;
    s.i = ((int32_t)n + 127) << 23;
    return x < -87.3f ? 0.0f : q * s.f;
}

/* e^x - 1 for x <= 88: the Taylor series to x^9 for |x| < ln2 / 2 (truncation < 3e-10 relative; no
 * cancellation), e^x - 1 otherwise. */
static inline __attribute__((always_inline)) float rexpm1(float x) {
    float t = x * (1.0f + x * (0.5f + x * (1.6666667e-1f + x * (4.1666668e-2f + x * (8.3333338e-3f +
              x * (1.3888889e-3f + x * (1.9841270e-4f + x * (2.4801587e-5f +
              x * 2.7557319e-6f))))))));
    return x > -0.3466f && x < 0.3466f ? t : rexp(x) - 1.0f;
}

/* log x for normal x > 0: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(f),
 * f = (m - 1) / (m + 1), |f| <= 0.172, by its series to f^11 (truncation < 1e-10). */
static inline __attribute__((always_inline)) float rlog(float x) {
    fbits b;
    b.f = x;
    int32_t e = ((b.i >> 23) & 0xff) - 127;
    b.i = (b.i & 0x007fffff) | 0x3f800000;
    float m = b.f;
    int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    float ef = (float)(e + big);
    float f = (m - 1.0f) / (m + 1.0f);
    float s2 = f * f;
    float lm = 2.0f * f * (1.0f + s2 * (3.3333334e-1f + s2 * (2.0e-1f + s2 * (1.4285715e-1f +
               s2 * (1.1111111e-1f + s2 * 9.0909094e-2f)))));
    return ef * 0.693145751953125f + (ef * 1.42860676533e-6f + lm);
}

/* 1 / sqrt(x) for normal x > 0: a first guess from the exponent bits (relative error < 3.5e-2),
 * then three Newton steps y <- y (3 - x y^2) / 2 (< 2e-3, < 5e-6, < 4e-11: float rounding). */
static inline __attribute__((always_inline)) float rrsqrt(float x) {
    fbits b;
    b.f = x;
    b.i = 0x5f375a86 - (b.i >> 1);
    float y = b.f, h = 0.5f * x;
    y = y * (1.5f - h * y * y);
    y = y * (1.5f - h * y * y);
    y = y * (1.5f - h * y * y);
    return y;
}

/* The softmax's per-element quantities from the largest logit m and the others' sum
 * sr = sum_{k != max} exp(z_k - m): 1 / sum exp, lse, and the largest class's log p and u
 * (-log1p(sr + tiny) and (sr + tiny) / (1 + sr): exact near saturation, > 0 when every other class
 * underflows). log1p(sr) = log(w) + (sr - (w - 1)) / w with w = 1 + sr rounded. */
typedef struct {
    float inv, lse, lpm, um;
} soft_t;

static inline __attribute__((always_inline)) soft_t softparts(float m, float sr) {
    soft_t o;
    float w = 1.0f + sr;
    o.inv = 1.0f / w;
    float l1 = rlog(w) + (sr - (w - 1.0f)) * o.inv;
    o.lse = m + l1;
    o.lpm = -(l1 + TINY * o.inv);
    float um = (sr + TINY) * o.inv;
    o.um = um < TINY ? TINY : um;
    return o;
}

/* The per-class quantities of one element: f = u^gamma log p (= -FL), nd = -FL'; and, with an
 * NNFL part (nn), fc = f of the clamped loss (A - FL(max(log p, -A))) and ndl = nd [log p >= -A].
 * nd = u^gamma (1 - gamma t) = u^(gamma - 1) (u - gamma p log p), with t u = p log p in [-u, 0]
 * (clamped there for the largest class): no division. gm: 0 gamma = 0, 1 gamma = 1/2, 2 gamma = 1,
 * 3 gamma = 2, 4 any other gamma > 0 (u^(gamma - 1) = exp((gamma - 1) log u)); 5: the classes'
 * terms of NGCE instead, FL = 1 - p^q with q = gamma (Ma et al. 2020). gm and nn are compile-time
 * constants of each instantiation. */
typedef struct {
    float f, nd, fc, ndl, pl; /* (pl = p log p) */
} terms_t;

static inline __attribute__((always_inline)) terms_t elem(float p, float lp, float u, int ism,
                                                          const prm_t *P, const int gm,
                                                          const int nn) {
    terms_t o;
    if (gm == 5) { /* GCE-type classes: FL = 1 - p^q, q = gamma: f = expm1(q log p), nd = q p^q */
        float x = P->gamma * lp;
        o.f = rexpm1(x);
        o.nd = P->gamma * (1.0f + o.f);
        o.fc = o.ndl = 0.0f;
        o.pl = p * lp;
        return o;
    }
    float pl = p * lp;
    o.pl = pl;
    float plc = pl < -u ? -u : (pl > 0.0f ? 0.0f : pl);
    pl = ism ? plc : pl;
    float ru, ug; /* u^(gamma - 1), u^gamma */
    switch (gm) {
    case 0: ru = 0.0f; ug = 1.0f; break;
    case 1: ru = rrsqrt(u); ug = u * ru; break;
    case 2: ru = 1.0f; ug = u; break;
    case 3: ru = u; ug = u * u; break;
    default: ru = rexp((P->gamma - 1.0f) * rlog(u)); ug = ru * u; break;
    }
    o.f = ug * lp;
    o.nd = gm == 0 ? 1.0f : ru * (u - P->gamma * pl);
    if (nn) {
        int live = lp >= -P->A;
        o.fc = live ? P->A + o.f : P->kc;
        o.ndl = live ? o.nd : 0.0f;
    } else {
        o.fc = o.ndl = 0.0f;
    }
    return o;
}

typedef struct {
    float l, Cy, D1, D2, SG, SGo, Gm;
} coef_t;

/* A column term of the label's p_y (u_y = 1 - p_y, exact) and its derivative with respect to
 * log p_y (formed only when k1 != 0), by its type ct:
 *   0 power:       k0 + k1 x^cq, x = ca + cs p_y (0 where x <= 0), d = k1 cq cs p_y x^(cq - 1)
 *                  (GCE, AGCE, AUL: Zhang & Sabuncu 2018, Zhou et al. 2021);
 *   1 exponential: k1 exp(cs p_y), d = k1 cs p_y exp(cs p_y) (AEL, Zhou et al. 2021);
 *   2 Taylor:      k1 sum_{j=1..cq} u_y^j / j, d = -k1 p_y sum_{j<cq} u_y^j (Taylor-CE, Feng et
 *                  al. 2020);
 *   3 truncated:   k0 + k1 max(p_y, ca)^cq, d = k1 cq p_y^cq where p_y >= ca, else 0
 *                  (truncated Lq). */
typedef struct {
    float v, d;
} col_t;

static inline __attribute__((always_inline)) col_t colterm(float py, float uy, const prm_t *P,
                                                           const int ct) {
    col_t o;
    if (ct == 1) {
        float e = rexp(P->cs * py);
        o.v = P->k1 * e;
        o.d = P->k1 * P->cs * py * e;
    } else if (ct == 2) {
        int t = (int)P->cq;
        float v = 1.0f / (float)t, du = 1.0f; /* Horner in u */
        for (int j = t - 1; j >= 1; j--) {
            v = v * uy + 1.0f / (float)j;
            du = du * uy + 1.0f;
        }
        o.v = P->k1 * v * uy;
        o.d = -P->k1 * py * du;
    } else {
        float x = ct == 3 ? (py >= P->ca ? py : P->ca) : P->ca + P->cs * py;
        float xq1 = rexp((P->cq - 1.0f) * rlog(x > TINY ? x : TINY));
        xq1 = x > 0.0f ? xq1 : 0.0f;
        o.v = P->k0 + P->k1 * x * xq1;
        o.d = ct == 3 ? (py >= P->ca ? P->k1 * P->cq * x * xq1 : 0.0f)
                      : P->k1 * P->cq * P->cs * py * xq1;
    }
    return o;
}

/* The column term of nb elements (p_y from E, u_y exact for the largest class) into cv, cd. */
static inline __attribute__((always_inline)) void col_loop(const float *E, const int32_t *yb,
                                                           const int32_t *im, const float *um,
                                                           int64_t nb, const prm_t *P, float *cv,
                                                           float *cd, const int ct) {
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        float py = E[yb[b] * BLK + b];
        col_t c = colterm(py, yb[b] == im[b] ? um[b] : 1.0f - py, P, ct);
        cv[b] = c.v;
        cd[b] = c.d;
    }
}

/* The loss of one element and the coefficients of its gradient (see the top of the file). Snd and
 * Sndl are the sums of nd and ndl over the classes other than the largest (tm: that class's
 * terms); SGo = sum_{k != max} G_k, so that the largest class's gradient G_m - p_m sum_k G_k
 * = G_m (1 - p_m) - p_m SGo is formed without cancellation when it saturates (ymax: y is it). */
static inline __attribute__((always_inline)) coef_t coefs(terms_t ty, float py, float uy, float Sfl,
                                                          float Snd, float Sf, float Sndl,
                                                          float Splo, terms_t tm, float pm,
                                                          float lpm, float um, int ymax, float cv,
                                                          float cd, const prm_t *P, const int nn) {
    coef_t k;
    int n = P->a_n != 0.0f; /* (an unused part's terms are not formed) */
    float rS = n ? -1.0f / Sfl : 0.0f; /* 1 / sum_k FL_k */
    float FLy = -ty.f;
    float Ln = n ? FLy * rS : 0.0f;
    k.l = P->a_f * FLy + P->a_n * Ln + P->c * uy;
    k.Cy = -P->a_f * ty.nd - P->c * py - P->a_n * ty.nd * rS;
    k.l += cv;
    k.Cy += cd;
    k.D1 = P->a_n * Ln * rS;
    k.D2 = 0.0f;
    if (nn) {
        float rSf = 1.0f / Sf, Lnn = ty.fc * rSf;
        k.l += P->a_nn * (1.0f - Lnn);
        k.Cy -= P->a_nn * ty.ndl * rSf;
        k.D2 = P->a_nn * Lnn * rSf;
    }
    /* bootstrapping: a_h H(p), dH/dlog p_k = -p_k (log p_k + 1); a_m (-log p_max) */
    k.l += -P->a_h * (Splo + tm.pl) - P->a_m * lpm;
    k.Gm = -P->a_h * pm * (lpm + 1.0f) - P->a_m; /* (the largest class's share of these) */
    k.SGo = (ymax ? 0.0f : k.Cy) + k.D1 * Snd + (nn ? k.D2 * Sndl : 0.0f) - P->a_h * (Splo + um);
    k.SG = k.SGo + (ymax ? k.Cy : 0.0f) + k.D1 * tm.nd + (nn ? k.D2 * tm.ndl : 0.0f) + k.Gm;
    return k;
}

/* Elements [r0, r1) of the rows layout, one at a time, vectorised along the classes (many
 * classes): classes contiguous, C per element. */
static inline __attribute__((always_inline)) void rows_k(const float *z, const int64_t *y,
                                                         const float *ew, float *ell, float *g,
                                                         int64_t r0, int64_t r1, int64_t C,
                                                         const prm_t *P, float *E, const int gm,
                                                         const int nn) {
    for (int64_t r = r0; r < r1; r++) {
        const float *zr = z + r * C;
        float *gr = g ? g + r * C : NULL;
        float w = ew ? ew[r] : 1.0f;
        if (w == 0.0f) {
            ell[r] = 0.0f;
            if (gr) memset(gr, 0, (size_t)C * sizeof(float));
            continue;
        }
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int64_t k = 0; k < C; k++) m = zr[k] > m ? zr[k] : m;
        int32_t im = (int32_t)C - 1;
#pragma omp simd reduction(min : im)
        for (int32_t k = 0; k < (int32_t)C; k++) im = zr[k] == m && k < im ? k : im;
        float sr = 0.0f;
#pragma omp simd reduction(+ : sr)
        for (int64_t k = 0; k < C; k++) {
            float e = rexp(zr[k] - m);
            E[k] = e;
            sr += k == im ? 0.0f : e;
        }
        soft_t sp = softparts(m, sr);
        float inv = sp.inv, lse = sp.lse, lpm = sp.lpm, um = sp.um;
        /* (Snd, Sndl, Splo: without the largest class) */
        float Sfl = 0.0f, Snd = 0.0f, Sf = 0.0f, Sndl = 0.0f, Splo = 0.0f;
#pragma omp simd reduction(+ : Sfl, Snd, Sf, Sndl, Splo)
        for (int64_t k = 0; k < C; k++) {
            int ism = k == im;
            float p = E[k] * inv;
            terms_t o = elem(p, ism ? lpm : zr[k] - lse, ism ? um : 1.0f - p, ism, P, gm, nn);
            Sfl += o.f;
            Snd += ism ? 0.0f : o.nd;
            Sf += o.fc;
            Sndl += ism ? 0.0f : o.ndl;
            Splo += ism ? 0.0f : o.pl;
            if (gr) gr[k] = o.nd;
        }
        int64_t yy = y[r];
        int ismy = yy == im;
        float py = E[yy] * inv, uy = ismy ? um : 1.0f - py;
        terms_t ty = elem(py, ismy ? lpm : zr[yy] - lse, uy, ismy, P, gm, nn);
        terms_t tm = elem(E[im] * inv, lpm, um, 1, P, gm, nn);
        col_t ct = {0.0f, 0.0f};
        if (P->k1 != 0.0f) {
            int t = (int)P->ctype;
            ct = t == 1 ? colterm(py, uy, P, 1)
                 : t == 2 ? colterm(py, uy, P, 2)
                 : t == 3 ? colterm(py, uy, P, 3) : colterm(py, uy, P, 0);
        }
        coef_t k = coefs(ty, py, uy, Sfl, Snd, Sf, Sndl, Splo, tm, inv, lpm, um, ismy, ct.v, ct.d,
                         P, nn);
        ell[r] = w * k.l;
        if (!gr) continue;
        float wf = w * P->fac, d1 = wf * k.D1, d2 = wf * k.D2, sg = wf * k.SG, na = -P->A;
        float ah = wf * P->a_h;
#pragma omp simd
        for (int64_t k2 = 0; k2 < C; k2++) {
            float lp = k2 == im ? lpm : zr[k2] - lse, p = E[k2] * inv;
            float d = nn && lp >= na ? d1 + d2 : d1;
            gr[k2] = gr[k2] * d - p * sg - ah * p * (lp + 1.0f);
        }
        gr[yy] += wf * k.Cy;
        /* the largest class: G_m (1 - p_m) - p_m SGo */
        float dm = nn && lpm >= na ? d1 + d2 : d1;
        float Gm = tm.nd * dm + (ismy ? wf * k.Cy : 0.0f) + wf * k.Gm;
        gr[im] = Gm * um - inv * wf * k.SGo;
    }
}

/* Elements [v0, v0 + nb) (nb <= BLK) of a (C, V) block whose classes lie V apart (a sample of a
 * segmentation map, or a transposed block of rows), vectorised along the elements; y, ew, ell are
 * indexed by the element, z and g by k V + element. E: (C, BLK) scratch. */
static inline __attribute__((always_inline)) void grid_k(const float *z, const int64_t *y,
                                                         const float *ew, float *ell, float *g,
                                                         int64_t V, int64_t v0, int64_t nb,
                                                         int64_t C, const prm_t *P, float *E,
                                                         const int gm, const int nn) {
    float m[BLK], inv[BLK], lse[BLK], lpm[BLK], um[BLK], w[BLK];
    float Sfl[BLK], Snd[BLK], Sf[BLK], Sndl[BLK], ndm[BLK], ndlm[BLK], Splo[BLK], plm[BLK];
    float cy[BLK], d1[BLK], d2[BLK], sg[BLK], sgo[BLK], gmx[BLK];
    int32_t im[BLK], yb[BLK];
    const float *zb = z + v0;
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        m[b] = -INFINITY;
        im[b] = 0;
        yb[b] = (int32_t)y[v0 + b];
        w[b] = ew ? ew[v0 + b] : 1.0f;
        Sfl[b] = Snd[b] = Sf[b] = Sndl[b] = ndm[b] = ndlm[b] = Splo[b] = plm[b] = 0.0f;
        lse[b] = 0.0f;
    }
    for (int64_t k = 0; k < C; k++) {
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            float v = zb[k * V + b];
            m[b] = v > m[b] ? v : m[b];
        }
    }
    for (int64_t k = C - 1; k >= 0; k--) { /* the first class at the maximum */
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) im[b] = zb[k * V + b] == m[b] ? (int32_t)k : im[b];
    }
    for (int64_t k = 0; k < C; k++) {
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            float e = rexp(zb[k * V + b] - m[b]);
            E[k * BLK + b] = e;
            lse[b] += k == im[b] ? 0.0f : e; /* (the others' sum, for now) */
        }
    }
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        soft_t sp = softparts(m[b], lse[b]);
        inv[b] = sp.inv;
        lse[b] = sp.lse;
        lpm[b] = sp.lpm;
        um[b] = sp.um;
    }
    for (int64_t k = 0; k < C; k++) {
        float *gk = g ? g + k * V + v0 : NULL;
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            int ism = k == im[b];
            float p = E[k * BLK + b] * inv[b];
            float u = ism ? um[b] : 1.0f - p;
            terms_t o = elem(p, ism ? lpm[b] : zb[k * V + b] - lse[b], u, ism, P, gm, nn);
            E[k * BLK + b] = p;
            Sfl[b] += o.f;
            Snd[b] += ism ? 0.0f : o.nd; /* (the largest class apart) */
            ndm[b] = ism ? o.nd : ndm[b];
            Splo[b] += ism ? 0.0f : o.pl;
            plm[b] = ism ? o.pl : plm[b];
            if (nn) {
                Sf[b] += o.fc;
                Sndl[b] += ism ? 0.0f : o.ndl;
                ndlm[b] = ism ? o.ndl : ndlm[b];
            }
            if (gk) gk[b] = o.nd;
        }
    }
    float cv[BLK], cd[BLK]; /* the column term (a loop of its own: only when there is one) */
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) cv[b] = cd[b] = 0.0f;
    switch (P->k1 != 0.0f ? (int)P->ctype : -1) {
    case -1: break;
    case 1: col_loop(E, yb, im, um, nb, P, cv, cd, 1); break;
    case 2: col_loop(E, yb, im, um, nb, P, cv, cd, 2); break;
    case 3: col_loop(E, yb, im, um, nb, P, cv, cd, 3); break;
    default: col_loop(E, yb, im, um, nb, P, cv, cd, 0); break;
    }
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        int32_t ky = yb[b];
        int ism = ky == im[b];
        float py = E[ky * BLK + b];
        float uy = ism ? um[b] : 1.0f - py;
        terms_t ty = elem(py, ism ? lpm[b] : zb[ky * V + b] - lse[b], uy, ism, P, gm, nn);
        terms_t tm = {0.0f, ndm[b], 0.0f, ndlm[b], plm[b]};
        coef_t k = coefs(ty, py, uy, Sfl[b], Snd[b], Sf[b], Sndl[b], Splo[b], tm, inv[b], lpm[b],
                         um[b], ism, cv[b], cd[b], P, nn);
        int live = w[b] != 0.0f;
        float wf = w[b] * P->fac;
        ell[v0 + b] = live ? w[b] * k.l : 0.0f;
        cy[b] = live ? wf * k.Cy : 0.0f;
        d1[b] = live ? wf * k.D1 : 0.0f;
        d2[b] = live ? wf * k.D2 : 0.0f;
        sg[b] = live ? wf * k.SG : 0.0f;
        sgo[b] = live ? wf * k.SGo : 0.0f;
        gmx[b] = live ? wf * k.Gm : 0.0f;
    }
    if (!g) return;
    float na = -P->A, ah = P->a_h * P->fac;
    for (int64_t k = 0; k < C; k++) {
        float *gk = g + k * V + v0;
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            float lp = k == im[b] ? lpm[b] : zb[k * V + b] - lse[b], p = E[k * BLK + b];
            float d = nn && lp >= na ? d1[b] + d2[b] : d1[b];
            float gy = k == yb[b] ? cy[b] : 0.0f;
            float v = gk[b] * d - p * sg[b] + gy - w[b] * ah * p * (lp + 1.0f);
            /* the largest class: G_m (1 - p_m) - p_m SGo (no cancellation at saturation) */
            float vm = (gk[b] * d + gy + gmx[b]) * um[b] - p * sgo[b];
            v = k == im[b] ? vm : v;
            gk[b] = w[b] != 0.0f ? v : 0.0f;
        }
    }
}

/* The items [i0, i1) of one thread: rows, (sample, block) pairs or samples. The first member of
 * every job. */
typedef struct {
    int64_t i0, i1;
} span_t;

/* A block of nb <= BLK elements whose classes lie V apart, from element v0 on: zb and gb point at
 * its (C, V) base, e0 is the index of its first element in y, ew and the outputs minus v0. */
typedef void (*block_cb)(const void *job, const float *zb, int64_t e0, int64_t V, int64_t v0,
                         int64_t nb, float *gb, float *E);

/* The transposed block T (C, BLK) of nb rows of C classes at zb, and back (G into rows at go). */
static void transpose_in(const float *zb, int64_t nb, int64_t C, float *T) {
    for (int64_t b = 0; b < nb; b++)
        for (int64_t k = 0; k < C; k++) T[k * BLK + b] = zb[b * C + k];
}

static void transpose_out(const float *G, int64_t nb, int64_t C, float *go) {
    for (int64_t b = 0; b < nb; b++)
        for (int64_t k = 0; k < C; k++) go[b * C + k] = G[k * BLK + b];
}

/* Rows [i0, i1) of C contiguous classes through a block kernel: blocks of BLK rows are transposed
 * into T (C, BLK), so that every loop of the kernel runs along the rows, vectorised, with no
 * reduction over the classes; the gradient block Gs is transposed back into g (if any). */
static void rows_in_blocks(const void *job, const span_t *sp, const float *z, float *g, int64_t C,
                           float *T, float *Gs, float *E, block_cb cb) {
    for (int64_t r0 = sp->i0; r0 < sp->i1; r0 += BLK) {
        int64_t nb = sp->i1 - r0 < BLK ? sp->i1 - r0 : BLK;
        transpose_in(z + r0 * C, nb, C, T);
        cb(job, T, r0, BLK, 0, nb, g ? Gs : NULL, E);
        if (g) transpose_out(Gs, nb, C, g + r0 * C);
    }
}

/* (sample, block) pairs [i0, i1) of a grid (N, C, V) through a block kernel. */
static void grid_in_blocks(const void *job, const span_t *sp, const float *z, float *g, int64_t C,
                           int64_t V, float *E, block_cb cb) {
    int64_t nblk = (V + BLK - 1) / BLK, CV = C * V;
    for (int64_t i = sp->i0; i < sp->i1; i++) {
        int64_t n = i / nblk, v0 = (i % nblk) * BLK;
        int64_t nb = V - v0 < BLK ? V - v0 : BLK;
        cb(job, z + n * CV, n * V, V, v0, nb, g ? g + n * CV : NULL, E);
    }
}

typedef struct {
    span_t sp;
    const float *z;
    const int64_t *y;
    const float *ew;
    float *ell, *g;
    int64_t N, C, V;
    prm_t P;
    int gm, nn;
} job_t;

/* One compiled instance of each kernel per (gm, nn), in tables indexed by gm * 2 + nn. */
typedef void (*rows_fn)(const float *, const int64_t *, const float *, float *, float *, int64_t,
                        int64_t, int64_t, const prm_t *, float *);
typedef void (*grid_fn)(const float *, const int64_t *, const float *, float *, float *, int64_t,
                        int64_t, int64_t, int64_t, const prm_t *, float *);
#define INSTANCES(G, NN)                                                                          \
    static void rows_##G##_##NN(const float *z, const int64_t *y, const float *ew, float *ell,     \
                                float *g, int64_t r0, int64_t r1, int64_t C, const prm_t *P,       \
                                float *E) {                                                        \
        rows_k(z, y, ew, ell, g, r0, r1, C, P, E, G, NN);                                          \
    }                                                                                              \
    static void grid_##G##_##NN(const float *z, const int64_t *y, const float *ew, float *ell,     \
                                float *g, int64_t V, int64_t v0, int64_t nb, int64_t C,            \
                                const prm_t *P, float *E) {                                        \
        grid_k(z, y, ew, ell, g, V, v0, nb, C, P, E, G, NN);                                       \
    }
INSTANCES(0, 0) INSTANCES(0, 1) INSTANCES(1, 0) INSTANCES(1, 1) INSTANCES(2, 0)
INSTANCES(2, 1) INSTANCES(3, 0) INSTANCES(3, 1) INSTANCES(4, 0) INSTANCES(4, 1) INSTANCES(5, 0)
#undef INSTANCES
static const rows_fn ROWS_FN[11] = {rows_0_0, rows_0_1, rows_1_0, rows_1_1, rows_2_0, rows_2_1,
                                    rows_3_0, rows_3_1, rows_4_0, rows_4_1, rows_5_0};
static const grid_fn GRID_FN[11] = {grid_0_0, grid_0_1, grid_1_0, grid_1_1, grid_2_0, grid_2_1,
                                    grid_3_0, grid_3_1, grid_4_0, grid_4_1, grid_5_0};

static void focal_block(const void *jv, const float *zb, int64_t e0, int64_t V, int64_t v0,
                        int64_t nb, float *gb, float *E) {
    const job_t *j = (const job_t *)jv;
    GRID_FN[j->gm * 2 + j->nn](zb, j->y + e0, j->ew ? j->ew + e0 : NULL, j->ell + e0, gb, V, v0, nb,
                               j->C, &j->P, E);
}

static void *run_job(void *arg) {
    job_t *j = (job_t *)arg;
    int64_t C = j->C;
    int blocked = j->V == 1 && C < ROWS_MIN_C;
    size_t n = (size_t)C * (j->V == 1 && !blocked ? 1 : BLK) * (blocked ? 3 : 1);
    float *E = (float *)malloc(n * sizeof(float));
    if (!E) return (void *)(intptr_t)1;
    if (blocked)
        rows_in_blocks(j, &j->sp, j->z, j->g, C, E + C * BLK, E + 2 * C * BLK, E, focal_block);
    else if (j->V == 1)
        ROWS_FN[j->gm * 2 + j->nn](j->z, j->y, j->ew, j->ell, j->g, j->sp.i0, j->sp.i1, C, &j->P,
                                   E);
    else
        grid_in_blocks(j, &j->sp, j->z, j->g, C, j->V, E, focal_block);
    free(E);
    return NULL;
}

/* Threads: at most nthreads (and 64), at least ~32k values each, at most one per item. */
static int64_t n_threads(int64_t nthreads, int64_t items, int64_t values) {
    int64_t t = nthreads < 1 ? 1 : nthreads;
    int64_t most = values / 32768;
    if (t > most) t = most < 1 ? 1 : most;
    if (t > items) t = items < 1 ? 1 : items;
    return t > 64 ? 64 : t;
}

/* Runs fn on t copies of the job base (size bytes, a span_t first) that split [0, items) evenly,
 * copies 1.. on new threads and copy 0 on this one (a copy whose thread cannot be started runs here
 * too); fn returns its status as a pointer. Returns the status of all jobs or'ed (1 also when the
 * copies cannot be allocated). */
static int run_split(const void *base, size_t size, int64_t items, int64_t values, int nthreads,
                     void *(*fn)(void *)) {
    int64_t t = n_threads(nthreads, items, values);
    char *jobs = (char *)malloc((size_t)t * size);
    if (!jobs) return 1;
    for (int64_t i = 0; i < t; i++) {
        memcpy(jobs + i * size, base, size);
        span_t *sp = (span_t *)(jobs + i * size);
        sp->i0 = items * i / t;
        sp->i1 = items * (i + 1) / t;
    }
    int status = 0;
#ifdef _OPENMP
    /* (built with -fopenmp: torch's own OpenMP runtime, already loaded under the same soname, and
     * its warm thread pool; no second set of threads competing with torch's spinning ones) */
#pragma omp parallel for num_threads(t) schedule(static, 1) reduction(| : status)
    for (int64_t i = 0; i < t; i++) status |= (int)(intptr_t)fn(jobs + i * size);
#else
    pthread_t th[64];
    int started[64];
    for (int64_t i = 1; i < t; i++)
        started[i] = pthread_create(&th[i], NULL, fn, jobs + i * size) == 0;
    status = (int)(intptr_t)fn(jobs);
    for (int64_t i = 1; i < t; i++) {
        void *r;
        if (started[i])
            pthread_join(th[i], &r);
        else
            r = fn(jobs + i * size);
        status |= (int)(intptr_t)r;
    }
#endif
    free(jobs);
    return status;
}

/* Entry point. z: (N, C, V) float32 (V = 1: rows layout of N rows), y: (N, V) int64 in [0, C),
 * ew: (N, V) element weights or NULL (all 1; 0 gives a zero loss and gradient), ell: (N, V) out,
 * g: (N, C, V) out or NULL (no gradient). prm: gamma, a_f, a_n, a_nn, c, A, kc, fac, k0, k1, ca,
 * cs, cq, ctype, a_h, a_m (see prm_t). gm: the case of elem (0-5); the NNFL terms are formed when
 * a_nn != 0 (not with gm = 5). Returns 0, or 1 when memory could not be allocated. */
int rf_focal(const float *z, const int64_t *y, const float *ew, float *ell, float *g, int64_t N,
             int64_t C, int64_t V, const float *prm, int gm, int nthreads) {
    job_t base = {{0, 0}, z, y, ew, ell, g, N, C, V,
                  {prm[0], prm[1], prm[2], prm[3], prm[4], prm[5], prm[6], prm[7], prm[8], prm[9],
                   prm[10], prm[11], prm[12], prm[13], prm[14], prm[15]},
                  gm < 0 || gm > 5 ? 4 : gm, prm[3] != 0.0f && gm != 5};
    int64_t items = V == 1 ? N : N * ((V + BLK - 1) / BLK);
    return run_split(&base, sizeof(job_t), items, N * C * V, nthreads, run_job);
}

/* ----------------------------------------------------------------------------------------------
 * Noise-robust Dice (Wang et al., IEEE TMI 2020) for integer masks: per sample n and class c,
 *
 *   L_n = sum_c a_c N_c / D_c,  N_c = sum_v |d_v|^gamma,  D_c = sum_v p_v^2 + G_c + eps,
 *
 * d = p - g (g the one-hot mask), G_c the voxels of class c. With s = sign(d) |d|^(gamma - 1):
 * dL/dp = h = a_c (gamma s / D_c - 2 N_c p / D_c^2), and dL/dz = p (h - sum_c p h). The label's
 * d = p_y - 1 = -(sum of the other classes' exp) / sum exp (no cancellation). kappa scales the
 * gradient (1/N for the mean over samples). gm: 0 gamma = 1 (s = sign d), 1 gamma = 3/2
 * (s = d / sqrt|d|), 2 gamma = 2 (s = d), 3 other (s = d exp((gamma - 2) log|d|)); |d| is
 * floored at the smallest normal float (0 stays 0).
 * ---------------------------------------------------------------------------------------------- */
typedef struct {
    float gamma, eps, kappa;
} dprm_t;

static inline __attribute__((always_inline)) float dice_s(float d, float gamma, const int gm) {
    float ad = fabsf(d) < TINY ? TINY : fabsf(d);
    switch (gm) {
    case 0: return d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f);
    case 1: return d * rrsqrt(ad);
    case 2: return d;
    default: return d * rexp((gamma - 2.0f) * rlog(ad));
    }
}

/* exp(z - max z) of a block of nb elements whose classes lie V apart into E (C, BLK), the largest
 * logit into m and the sum of E into s. */
static inline __attribute__((always_inline)) void block_exp(const float *zb, int64_t V, int64_t nb,
                                                            int64_t C, float *E, float *m,
                                                            float *s) {
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        m[b] = -INFINITY;
        s[b] = 0.0f;
    }
    for (int64_t k = 0; k < C; k++) {
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) m[b] = zb[k * V + b] > m[b] ? zb[k * V + b] : m[b];
    }
    for (int64_t k = 0; k < C; k++) {
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            float e = rexp(zb[k * V + b] - m[b]);
            E[k * BLK + b] = e;
            s[b] += e;
        }
    }
}

/* The softmax of such a block: E <- p, and the label's d = p_y - 1 = -(the others' exp sum) / sum
 * exp in dy. */
static inline __attribute__((always_inline)) void block_softmax(const float *zb, const int64_t *yb,
                                                                int64_t V, int64_t nb, int64_t C,
                                                                float *E, float *dy) {
    float m[BLK], s[BLK], sr[BLK];
    block_exp(zb, V, nb, C, E, m, s);
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) sr[b] = 0.0f;
    for (int64_t k = 0; k < C; k++) {
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) sr[b] += k == yb[b] ? 0.0f : E[k * BLK + b];
    }
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        s[b] = 1.0f / s[b];
        dy[b] = -sr[b] * s[b];
    }
    for (int64_t k = 0; k < C; k++) {
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) E[k * BLK + b] *= s[b];
    }
}

/* (N, C) inputs: every voxel sum is one term. A (C, BLK) block T of transposed rows: per-row
 * losses into lossr, the gradient block (C, BLK) into G. */
static inline __attribute__((always_inline)) void dice_rows_k(const float *T, const int64_t *y,
                                                              const float *a, float *G,
                                                              float *lossr, int64_t nb, int64_t C,
                                                              const dprm_t *P, float *E,
                                                              const int gm) {
    float dy[BLK], sph[BLK], ls[BLK];
    block_softmax(T, y, BLK, nb, C, E, dy);
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) sph[b] = ls[b] = 0.0f;
    for (int64_t k = 0; k < C; k++) {
        float ak = a[k], ka = P->kappa * a[k];
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            float p = E[k * BLK + b];
            int isy = k == y[b];
            float d = isy ? dy[b] : p;
            float s = dice_s(d, P->gamma, gm), num = s * d;
            float rD = 1.0f / (p * p + (isy ? 1.0f : 0.0f) + P->eps);
            ls[b] += ak * num * rD;
            float h = ka * rD * (P->gamma * s - 2.0f * num * p * rD);
            G[k * BLK + b] = h;
            sph[b] += p * h;
        }
    }
    for (int64_t k = 0; k < C; k++) {
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            float p = E[k * BLK + b];
            G[k * BLK + b] = p * (G[k * BLK + b] - sph[b]);
        }
    }
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) lossr[b] = ls[b];
}

/* One sample of a grid (C, V): its loss, and the gradient into g (which holds p in between).
 * W: scratch of 4 C BLK + V floats. */
static inline __attribute__((always_inline)) float dice_sample_k(const float *z, const int64_t *y,
                                                                 const float *a, float *g,
                                                                 int64_t V, int64_t C,
                                                                 const dprm_t *P, float *W,
                                                                 const int gm) {
    float *E = W, *aN = W + C * BLK, *aP = W + 2 * C * BLK, *aG = W + 3 * C * BLK;
    float *dyv = W + 4 * C * BLK;
    for (int64_t i = 0; i < 3 * C * BLK; i++) aN[i] = 0.0f;
    for (int64_t v0 = 0; v0 < V; v0 += BLK) {
        int64_t nb = V - v0 < BLK ? V - v0 : BLK;
        block_softmax(z + v0, y + v0, V, nb, C, E, dyv + v0);
        for (int64_t k = 0; k < C; k++) {
            float *gk = g + k * V + v0;
#pragma omp simd
            for (int64_t b = 0; b < nb; b++) {
                float p = E[k * BLK + b];
                int isy = k == y[v0 + b];
                float d = isy ? dyv[v0 + b] : p;
                aN[k * BLK + b] += dice_s(d, P->gamma, gm) * d;
                aP[k * BLK + b] += p * p;
                aG[k * BLK + b] += isy ? 1.0f : 0.0f;
                gk[b] = p;
            }
        }
    }
    float loss = 0.0f;
    float *al = E, *be = E + C; /* (E is free: per-class coefficients) */
    for (int64_t k = 0; k < C; k++) {
        float Nk = 0.0f, Dk = 0.0f, Gk = 0.0f;
        for (int64_t b = 0; b < BLK; b++) {
            Nk += aN[k * BLK + b];
            Dk += aP[k * BLK + b];
            Gk += aG[k * BLK + b];
        }
        float rD = 1.0f / (Dk + Gk + P->eps);
        loss += a[k] * Nk * rD;
        al[k] = P->kappa * a[k] * P->gamma * rD;
        be[k] = -2.0f * P->kappa * a[k] * Nk * rD * rD;
    }
    float *H = aN, sph[BLK];
    for (int64_t v0 = 0; v0 < V; v0 += BLK) {
        int64_t nb = V - v0 < BLK ? V - v0 : BLK;
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) sph[b] = 0.0f;
        for (int64_t k = 0; k < C; k++) {
            const float *gk = g + k * V + v0;
            float alk = al[k], bek = be[k];
#pragma omp simd
            for (int64_t b = 0; b < nb; b++) {
                float p = gk[b];
                float d = k == y[v0 + b] ? dyv[v0 + b] : p;
                float h = alk * dice_s(d, P->gamma, gm) + bek * p;
                H[k * BLK + b] = h;
                sph[b] += p * h;
            }
        }
        for (int64_t k = 0; k < C; k++) {
            float *gk = g + k * V + v0;
#pragma omp simd
            for (int64_t b = 0; b < nb; b++) gk[b] = gk[b] * (H[k * BLK + b] - sph[b]);
        }
    }
    return loss;
}

typedef void (*drows_fn)(const float *, const int64_t *, const float *, float *, float *, int64_t,
                         int64_t, const dprm_t *, float *);
typedef float (*dsample_fn)(const float *, const int64_t *, const float *, float *, int64_t,
                            int64_t, const dprm_t *, float *);
#define DICE_INSTANCES(G)                                                                         \
    static void drows_##G(const float *T, const int64_t *y, const float *a, float *Gb, float *l,  \
                          int64_t nb, int64_t C, const dprm_t *P, float *E) {                     \
        dice_rows_k(T, y, a, Gb, l, nb, C, P, E, G);                                              \
    }                                                                                             \
    static float dsample_##G(const float *z, const int64_t *y, const float *a, float *g,          \
                             int64_t V, int64_t C, const dprm_t *P, float *W) {                   \
        return dice_sample_k(z, y, a, g, V, C, P, W, G);                                          \
    }
DICE_INSTANCES(0) DICE_INSTANCES(1) DICE_INSTANCES(2) DICE_INSTANCES(3)
#undef DICE_INSTANCES
static const drows_fn DROWS_FN[4] = {drows_0, drows_1, drows_2, drows_3};
static const dsample_fn DSAMPLE_FN[4] = {dsample_0, dsample_1, dsample_2, dsample_3};

typedef struct {
    span_t sp; /* rows (V = 1) or samples */
    const float *z, *a;
    const int64_t *y;
    float *g, *loss;
    int64_t C, V;
    dprm_t P;
    int gm;
} djob_t;

static void dice_block(const void *jv, const float *T, int64_t r0, int64_t V, int64_t v0,
                       int64_t nb, float *Gs, float *E) {
    const djob_t *j = (const djob_t *)jv;
    (void)V, (void)v0; /* (rows: the block is the transposed T, V = BLK and v0 = 0) */
    DROWS_FN[j->gm](T, j->y + r0, j->a, Gs, j->loss + r0, nb, j->C, &j->P, E);
}

static void *run_djob(void *arg) {
    djob_t *j = (djob_t *)arg;
    int64_t C = j->C, V = j->V;
    size_t n = V == 1 ? (size_t)3 * C * BLK : (size_t)4 * C * BLK + (size_t)V;
    float *W = (float *)malloc(n * sizeof(float));
    if (!W) return (void *)(intptr_t)1;
    if (V == 1) {
        rows_in_blocks(j, &j->sp, j->z, j->g, C, W + C * BLK, W + 2 * C * BLK, W, dice_block);
    } else {
        for (int64_t n0 = j->sp.i0; n0 < j->sp.i1; n0++)
            j->loss[n0] = DSAMPLE_FN[j->gm](j->z + n0 * C * V, j->y + n0 * V, j->a,
                                            j->g + n0 * C * V, V, C, &j->P, W);
    }
    free(W);
    return NULL;
}

/* Entry point. z: (N, C, V) float32 contiguous (V = 1: (N, C) rows), y: (N, V) int64 in [0, C),
 * a: (C,) class weights of the average, g: (N, C, V) out (the gradient times kappa), loss: (N,) out
 * (per-sample losses). prm: gamma, eps, kappa. Threads split the samples (rows). Returns 0, or 1
 * when memory could not be allocated. */
int rf_dice(const float *z, const int64_t *y, const float *a, float *g, float *loss, int64_t N,
            int64_t C, int64_t V, const float *prm, int gm, int nthreads) {
    djob_t base = {{0, 0}, z, a, y, g, loss, C, V, {prm[0], prm[1], prm[2]},
                   gm < 0 || gm > 3 ? 3 : gm};
    return run_split(&base, sizeof(djob_t), N, N * C * V, nthreads, run_djob);
}

/* ----------------------------------------------------------------------------------------------
 * Loss corrections with a transition matrix T (Patrini et al., CVPR 2017), integer targets; M is
 * (C, C) and its row y is read for an element of label y:
 *
 *   backward (mode 0), M = T^-1, s = row sums of M:
 *       l = -sum_j M_yj log p_j = s_y lse - sum_j M_yj z_j,  dl/dz_k = s_y p_k - M_yk;
 *   forward (mode 1), M = T^T: q = sum_j T_jy p_j (floored at the smallest normal float),
 *       l = -log q,  dl/dz_k = p_k (q_raw - M_yk) / q (= p_k (1 - T_ky / q) unless floored).
 *
 * Elements weighted by ew (0: zero loss and gradient), the gradient scaled by fac, in blocks of BLK
 * elements whose classes lie V apart (grids, or transposed blocks of rows).
 * ---------------------------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void corr_k(const float *z, const int64_t *y,
                                                         const float *ew, float *ell, float *g,
                                                         int64_t V, int64_t v0, int64_t nb,
                                                         int64_t C, const float *M, const float *sM,
                                                         float fac, float *E, const int mode) {
    float m[BLK], s[BLK], acc[BLK], w[BLK], cf[BLK], ck[BLK];
    int32_t yb[BLK];
    const float *zb = z + v0;
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        acc[b] = 0.0f;
        yb[b] = (int32_t)y[v0 + b];
        w[b] = ew ? ew[v0 + b] : 1.0f;
    }
    block_exp(zb, V, nb, C, E, m, s);
    for (int64_t k = 0; k < C; k++) { /* (forward: times 1/s below) */
#pragma omp simd
        for (int64_t b = 0; b < nb; b++)
            acc[b] += M[yb[b] * C + k] * (mode == 0 ? zb[k * V + b] : E[k * BLK + b]);
    }
#pragma omp simd
    for (int64_t b = 0; b < nb; b++) {
        float inv = 1.0f / s[b], l, wf = w[b] * fac;
        if (mode == 0) {
            float sy = sM[yb[b]];
            l = sy * (m[b] + rlog(s[b])) - acc[b];
            cf[b] = wf * sy;  /* gz = cf p - ck M_yk */
            ck[b] = wf;
        } else {
            float q0 = acc[b] * inv, q = q0 < TINY ? TINY : q0;
            l = -rlog(q);
            cf[b] = wf * q0 / q;
            ck[b] = wf / q;   /* gz = p (cf - ck M_yk) */
        }
        s[b] = inv;
        ell[v0 + b] = w[b] != 0.0f ? w[b] * l : 0.0f;
    }
    if (!g) return;
    for (int64_t k = 0; k < C; k++) {
        float *gk = g + k * V + v0;
#pragma omp simd
        for (int64_t b = 0; b < nb; b++) {
            float p = E[k * BLK + b] * s[b], mk = M[yb[b] * C + k];
            float v = mode == 0 ? cf[b] * p - ck[b] * mk : p * (cf[b] - ck[b] * mk);
            gk[b] = w[b] != 0.0f ? v : 0.0f;
        }
    }
}

typedef struct {
    span_t sp; /* rows, or (sample, block) pairs, as job_t */
    const float *z, *ew, *M, *sM;
    const int64_t *y;
    float *ell, *g;
    int64_t N, C, V;
    float fac;
    int mode;
} cjob_t;

static void corr_block(const void *jv, const float *zb, int64_t e0, int64_t V, int64_t v0,
                       int64_t nb, float *gb, float *E) {
    const cjob_t *j = (const cjob_t *)jv;
    const int64_t *y = j->y + e0;
    const float *ew = j->ew ? j->ew + e0 : NULL;
    if (j->mode == 0)
        corr_k(zb, y, ew, j->ell + e0, gb, V, v0, nb, j->C, j->M, j->sM, j->fac, E, 0);
    else
        corr_k(zb, y, ew, j->ell + e0, gb, V, v0, nb, j->C, j->M, j->sM, j->fac, E, 1);
}

static void *run_cjob(void *arg) {
    cjob_t *j = (cjob_t *)arg;
    int64_t C = j->C, V = j->V;
    float *W = (float *)malloc((size_t)C * BLK * (V == 1 ? 3 : 1) * sizeof(float));
    if (!W) return (void *)(intptr_t)1;
    if (V == 1)
        rows_in_blocks(j, &j->sp, j->z, j->g, C, W + C * BLK, W + 2 * C * BLK, W, corr_block);
    else
        grid_in_blocks(j, &j->sp, j->z, j->g, C, V, W, corr_block);
    free(W);
    return NULL;
}

/* Entry point. z: (N, C, V) float32 (V = 1: rows), y: (N, V) int64 in [0, C), ew: (N, V) or NULL,
 * ell: (N, V) out (ew times the loss), g: (N, C, V) out (the gradient times ew fac) or NULL; M:
 * (C, C), sM: (C,) its row sums (mode 0); mode 0 backward, 1 forward. Returns 0, or 1 when memory
 * could not be allocated. */
int rf_correction(const float *z, const int64_t *y, const float *ew, float *ell, float *g,
                  int64_t N, int64_t C, int64_t V, const float *M, const float *sM, float fac,
                  int mode, int nthreads) {
    cjob_t base = {{0, 0}, z, ew, M, sM, y, ell, g, N, C, V, fac, mode != 0};
    int64_t items = V == 1 ? N : N * ((V + BLK - 1) / BLK);
    return run_split(&base, sizeof(cjob_t), items, N * C * V, nthreads, run_cjob);
}
