/* The Philox noise stream of zoo on the CPU.
 *
 * z is a pure function of (seed, element index). Element e of a parameter's
 * direction lives in group g = e / GROUP at r = e % GROUP:
 *
 *   gaussian:   quarter k = r / (GROUP/4), q = r % (GROUP/4); counter g*(GROUP/4) + q;
 *               z = k-th output of Triton's randn4x(seed, counter)
 *   rademacher: word k = r / (GROUP/4), bit b = (r % (GROUP/4)) / 32, q = r % 32;
 *               counter g*32 + q; z = 2 * bit b of word k of randint4x(seed, counter) - 1
 *
 * which is exactly what zoo's Triton kernel computes with tl.randn4x and
 * tl.randint4x, so the integers are identical on both devices. Built with
 * ZOO_PRECISE (zoo's default), every float32 operation of Box-Muller is
 * correctly rounded: log, cos and sin are evaluated in float64 by the
 * polynomials below and rounded once, so z does not depend on the machine's
 * libm. Triton's float32 log/cos/sin are within a few ulp of that.
 * Loops run over arrays of counters so that the compiler vectorises them.
 */
#include <math.h>
#include <stdint.h>

/* Without ZOO_PRECISE (a measured alternative, see docs/kernel_notes.md) the
 * kernel calls float32 logf/cosf/sinf. glibc's libmvec has vector variants;
 * declaring them lets GCC call them from vectorised loops without -ffast-math. */
#ifdef ZOO_LIBMVEC
__attribute__((simd("notinbranch"))) float logf(float);
__attribute__((simd("notinbranch"))) float cosf(float);
__attribute__((simd("notinbranch"))) float sinf(float);
#endif

#define LOGF(x) logf(x)
#define COSF(x) cosf(x)
#define SINF(x) sinf(x)

#define GROUP 4096
#define QN (GROUP / 4)
#define QR (GROUP / 128)

/* Philox-4x32-10. The words live in 64-bit lanes (values below 2^32) so the
 * vectorised loop multiplies, shifts and xors without repacking 32-bit lanes:
 * 1.8x the throughput of the same code on uint32_t here. */
static inline void philox10(uint32_t key0, uint32_t key1, uint32_t c[4]) {
    const uint64_t M = 0xFFFFFFFFu;
    uint64_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3], k0 = key0, k1 = key1;
    for (int i = 0; i < 10; i++) {
        uint64_t pa = (uint64_t)(uint32_t)c0 * 0xD2511F53ull;
        uint64_t pb = (uint64_t)(uint32_t)c2 * 0xCD9E8D57ull;
        uint64_t n0 = (pb >> 32) ^ c1 ^ k0;
        uint64_t n2 = (pa >> 32) ^ c3 ^ k1;
        c1 = pb & M;
        c3 = pa & M;
        c0 = n0;
        c2 = n2;
        k0 = (k0 + 0x9E3779B9u) & M;
        k1 = (k1 + 0xBB67AE85u) & M;
    }
    c[0] = (uint32_t)c0; c[1] = (uint32_t)c1; c[2] = (uint32_t)c2; c[3] = (uint32_t)c3;
}

/* Triton's uint_to_uniform_float for 32-bit integers. */
static inline float to_uniform(uint32_t x) {
    int32_t i = (int32_t)x;
    i = i < 0 ? ~i : i;
    return (float)i * 4.6566127342e-10f;
}

/* Four blocks of QN uniforms for the QN counters of one gaussian group. */
static void uniforms(uint64_t seed, uint64_t group, float *u0, float *u1, float *u2, float *u3) {
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int q = 0; q < QN; q++) {
        uint64_t counter = group * QN + (uint64_t)q;
        uint32_t c[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0u, 0u};
        philox10(k0, k1, c);
        u0[q] = to_uniform(c[0]);
        u1[q] = to_uniform(c[1]);
        u2[q] = to_uniform(c[2]);
        u3[q] = to_uniform(c[3]);
    }
}

/* Box-Muller as Triton's pair_uniform_to_normal: (r cos th, r sin th).
 * Separate loops for cos and sin keep GCC from fusing them into a sincosf
 * call that libmvec cannot vectorise. */
#ifdef ZOO_PRECISE
/* log of a normal positive float32 in float64, < 1 ulp (of float64) error: u = 2^e m
 * with m in [sqrt(1/2), sqrt(2)), and fdlibm's minimax series in s = f / (2 + f). */
static inline double log_reduced(float u) {
    uint32_t bits;
    __builtin_memcpy(&bits, &u, 4);
    int e = (int)(bits >> 23) - 127;
    uint32_t mbits = (bits & 0x7FFFFFu) | 0x3F800000u;
    float mf;
    __builtin_memcpy(&mf, &mbits, 4);
    double m = (double)mf;
    int big = m > 1.41421356237309504880;
    m = big ? 0.5 * m : m;
    double k = (double)(e + big);
    double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
    double t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    double t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01 +
                w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    double R = t2 + t1;
    return k * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + R) + k * 1.90821492927058770002e-10)) - f);
}

/* cos and sin of th in [0, 2pi) in float64, < 1 ulp (of float64) error: Cody-Waite
 * reduction by pi/2 and fdlibm's minimax polynomials on [-pi/4, pi/4]. Written out
 * so that the loop vectorises; libmvec's float64 sin and cos were 1.6x slower here. */
static inline void sincos_reduced(double th, double *s, double *c) {
    const double pio2_hi = 1.57079632673412561417e+00, pio2_lo = 6.07710050650619224932e-11;
    double k = rint(th * 6.36619772367581382433e-01);
    double r = (th - k * pio2_hi) - k * pio2_lo;
    double z = r * r;
    double sp = r + r * z * (-1.66666666666666324348e-01 + z * (8.33333333332248946124e-03 +
                z * (-1.98412698298579493134e-04 + z * (2.75573137070700676789e-06 +
                z * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10)))));
    double cp = 1.0 - 0.5 * z + z * z * (4.16666666666666019037e-02 + z * (-1.38888888888741095749e-03 +
                z * (2.48015872894767294178e-05 + z * (-2.75573143513906633035e-07 +
                z * (2.08757232129817482790e-09 + z * -1.13596475577881948265e-11)))));
    int q = (int)k;
    double sa = (q & 1) ? cp : sp, ca = (q & 1) ? sp : cp;
    *s = (q & 2) ? -sa : sa;
    *c = ((q + 1) & 2) ? -ca : ca;
}
#endif

static void box_muller(const float *restrict a, const float *restrict b, float *restrict x, float *restrict y) {
    float r[QN], th[QN];
#ifdef ZOO_PRECISE
    for (int q = 0; q < QN; q++) r[q] = (float)log_reduced(fmaxf(1.0e-7f, a[q]));
#else
    for (int q = 0; q < QN; q++) r[q] = LOGF(fmaxf(1.0e-7f, a[q]));
#endif
    for (int q = 0; q < QN; q++) {
        r[q] = sqrtf(-2.0f * r[q]);
        th[q] = 6.283185307179586f * b[q];
    }
#ifdef ZOO_PRECISE
    for (int q = 0; q < QN; q++) {
        double s, c;
        sincos_reduced((double)th[q], &s, &c);
        x[q] = r[q] * (float)c;
        y[q] = r[q] * (float)s;
    }
#else
    for (int q = 0; q < QN; q++) x[q] = r[q] * COSF(th[q]);
    for (int q = 0; q < QN; q++) y[q] = r[q] * SINF(th[q]);
#endif
}

static void normal_group(uint64_t seed, uint64_t group, float *z /* GROUP */) {
    float u[4][QN];
    uniforms(seed, group, u[0], u[1], u[2], u[3]);
    box_muller(u[0], u[1], z, z + QN);
    box_muller(u[2], u[3], z + 2 * QN, z + 3 * QN);
}

static void rademacher_group(uint64_t seed, uint64_t group, float *z /* GROUP */) {
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    uint32_t w[4][QR];
    for (int q = 0; q < QR; q++) {
        uint64_t counter = group * QR + (uint64_t)q;
        uint32_t c[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0u, 0u};
        philox10(k0, k1, c);
        for (int k = 0; k < 4; k++) w[k][q] = c[k];
    }
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 32; b++)
            for (int q = 0; q < QR; q++)
                z[k * QN + b * QR + q] = (float)(int)((w[k][q] >> b) & 1u) * 2.0f - 1.0f;
}

typedef void (*group_fn)(uint64_t, uint64_t, float *);

/* Calls fn(group values, first element, count) for the groups that cover [start, start + n). */
#define FOR_EACH_GROUP(fill, seed, start, n, BODY)                          \
    do {                                                                    \
        float zg[GROUP];                                                    \
        int64_t e = (start), end = (start) + (n);                           \
        while (e < end) {                                                   \
            int64_t g = e / GROUP, lo = e - g * GROUP;                      \
            int64_t cnt = GROUP - lo < end - e ? GROUP - lo : end - e;      \
            fill((seed), (uint64_t)g, zg);                                  \
            const float *zs = zg + lo;                                      \
            int64_t off = e - (start);                                      \
            BODY                                                            \
            e += cnt;                                                       \
        }                                                                   \
    } while (0)

static group_fn pick(int dist) { return dist == 1 ? rademacher_group : normal_group; }

/* out[i] = z[start + i] for i < n. dist: 0 gaussian, 1 rademacher. */
void zoo_fill(float *out, int64_t n, int64_t start, uint64_t seed, int dist) {
    group_fn fill = pick(dist);
    FOR_EACH_GROUP(fill, seed, start, n, {
        for (int64_t i = 0; i < cnt; i++) out[off + i] = zs[i];
    });
}

/* p[i] += alpha * z[start + i], float32 parameters. */
void zoo_axpy_f32(float *p, int64_t n, int64_t start, uint64_t seed, int dist, float alpha) {
    group_fn fill = pick(dist);
    FOR_EACH_GROUP(fill, seed, start, n, {
        for (int64_t i = 0; i < cnt; i++) p[off + i] = fmaf(alpha, zs[i], p[off + i]);
    });
}

/* Sparse MeZO's sweep, float32 parameters: p[i] += alpha * (z[start + i] * m[i]), where m is the
 * magnitude mask of theta, the weights before the step's first perturbation.
 *   mode 0: m[i] = |p[i]| < tau (the weights are at theta);
 *   mode 1: the same, and m is stored as bit e % 8 of bits[e / 8] for element e = start + i;
 *   mode 2: m is read from bits (the weights are perturbed, so |p| no longer tells).
 * bits points at the parameter's whole bitmask. z * m as a product rather than a branch keeps
 * the bits of the unfused sweep, where z * 0 is a signed zero and fmaf(alpha, -0, p) may flip
 * the sign of a zero p. */
void zoo_axpy_masked_f32(float *p, int64_t n, int64_t start, uint64_t seed, int dist, float alpha,
                         float tau, uint8_t *bits, int mode) {
    group_fn fill = pick(dist);
    float m[GROUP];
    FOR_EACH_GROUP(fill, seed, start, n, {
        float *pp = p + off;
        uint8_t *bb = bits ? bits + (e >> 3) : 0; /* e is a multiple of GROUP: whole bytes */
        if (mode == 2) {
            for (int64_t j = 0; j < (cnt + 7) / 8; j++) {
                const uint32_t byte = bb[j];
                for (int b = 0; b < 8; b++) m[8 * j + b] = (float)((byte >> b) & 1u);
            }
        } else {
            for (int64_t i = 0; i < cnt; i++) m[i] = fabsf(pp[i]) < tau ? 1.0f : 0.0f;
            if (mode == 1) {
                /* m is zero past cnt, so the last byte's missing elements pack as zeros */
                for (int64_t i = cnt; i < (cnt + 7) / 8 * 8; i++) m[i] = 0.0f;
                for (int64_t j = 0; j < (cnt + 7) / 8; j++) {
                    uint32_t byte = 0;
                    for (int b = 0; b < 8; b++) byte |= (uint32_t)(m[8 * j + b] != 0.0f) << b;
                    bb[j] = (uint8_t)byte;
                }
            }
        }
        for (int64_t i = 0; i < cnt; i++) pp[i] = fmaf(alpha, zs[i] * m[i], pp[i]);
    });
}
