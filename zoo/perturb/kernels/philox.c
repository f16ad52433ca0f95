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
 * which is exactly what zoo's Triton kernel computes with tl.randint4x, so
 * the integers are identical on both devices and the normals differ only by
 * the rounding of logf/sinf/cosf. Loops are written over arrays of counters
 * so that the compiler vectorises Philox and (with libmvec) Box-Muller.
 */
#include <math.h>
#include <stdint.h>

/* glibc's libmvec has vector variants of these; declaring them lets GCC call
 * them from vectorised loops without -ffast-math (whose reassociation we do
 * not want). Built without ZOO_LIBMVEC, the loops call scalar libm. */
#ifdef ZOO_LIBMVEC
__attribute__((simd("notinbranch"))) float logf(float);
__attribute__((simd("notinbranch"))) float cosf(float);
__attribute__((simd("notinbranch"))) float sinf(float);
__attribute__((simd("notinbranch"))) double log(double);
__attribute__((simd("notinbranch"))) double cos(double);
__attribute__((simd("notinbranch"))) double sin(double);
#endif

/* ZOO_PRECISE: log, cos and sin in float64, rounded once to float32, so each
 * Box-Muller operation is correctly rounded (up to a ~1e-8 chance per element).
 * Otherwise libmvec's float32 versions (within 4 ulp). */
#ifdef ZOO_PRECISE
#define LOGF(x) ((float)log((double)(x)))
#define COSF(x) ((float)cos((double)(x)))
#define SINF(x) ((float)sin((double)(x)))
#else
#define LOGF(x) logf(x)
#define COSF(x) cosf(x)
#define SINF(x) sinf(x)
#endif

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
static void box_muller(const float *restrict a, const float *restrict b, float *restrict x, float *restrict y) {
    float r[QN], th[QN];
    for (int q = 0; q < QN; q++) r[q] = LOGF(fmaxf(1.0e-7f, a[q]));
    for (int q = 0; q < QN; q++) {
        r[q] = sqrtf(-2.0f * r[q]);
        th[q] = 6.283185307179586f * b[q];
    }
    for (int q = 0; q < QN; q++) x[q] = r[q] * COSF(th[q]);
    for (int q = 0; q < QN; q++) y[q] = r[q] * SINF(th[q]);
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
