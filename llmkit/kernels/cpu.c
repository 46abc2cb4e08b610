/* llmkit CPU kernels: the decode hot path of a transformer, for AVX2 + FMA (plain C otherwise).
 *
 * Every kernel has a PyTorch twin that tests/kernels/test_kernels.py holds it to (llmkit/kernels/__init__.py
 * documents each). Pointers in, results out; nothing allocated survives a call.
 *
 *   matvec_*     y[m, n] (+)= sum_k W[n, k] x[m, k]        W as f32 | bf16 | GGML Q8_0 | GGML Q4_1 rows
 *                (f32, 17 rows and more: span_f32, a blocked product with the same bits per row)
 *   rms_norm     y = x / sqrt(mean(x^2) + eps) * g          (Zhang & Sennrich 2019)
 *   rope_half    (a, b) -> (a cos - b sin, b cos + a sin)   half-split pairs, in place (Su et al. 2021)
 *   attend_one   softmax(q K^T * scale) V for one query row per head, GQA, key padding, window start
 *   decode_tokens / decode_batch   a LLaMA-family decoder's step over new rows, all of the above composed
 *                (a prompt's rows: attend_causal's tiles of queries sharing a KV head)
 *
 * GGML blocks (ggml-common.h), 32 weights each, rows of K/32 blocks:
 *   Q8_0  34 bytes: d (f16), qs[32] (int8)                   w_j = d * qs[j]
 *   Q4_1  20 bytes: d (f16), m (f16), qs[16] (nibbles)       w_j = d * q_j + m,  q_j = qs[j] & 15 (j < 16),
 *                                                            q_{j+16} = qs[j] >> 4
 * Against quantized weights the activations are rounded to int16 per block of 32 (scale s_x = absmax / 32767,
 * an error below 2^-16 of the block's largest value; ggml rounds them to int8, 256 times coarser), so a block's
 * dot product is exact integer arithmetic (vpmaddwd):
 *     sum_j w_j x_j = s_x (d * sum_j q_j xq_j + m * sum_j xq_j).
 *
 * Threads: a pool of our own (not OpenMP): matrix-vector products are split by output rows. Its workers are
 * pinned one per CPU, and the calling thread is pinned too while a "session" is open (llmkit_pool_session):
 * on small virtual machines an unpinned caller ends up sharing a CPU with a spinning worker, which turns each
 * of a token's hundreds of barriers into a scheduler time slice. Waiting threads spin with pause, yield now and
 * then (so a shared CPU still makes progress) and sleep on a condition variable after ~2 ms without work.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define LLMKIT_AVX2 1
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif
#define PREFETCH(p) __builtin_prefetch((p), 0, 3) /* into every cache level (x86: prefetcht0) */

#define QK 32
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;
typedef struct { uint16_t d, m; uint8_t qs[QK / 2]; } block_q4_1;
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_1) == 20, "Q4_1 block is 20 bytes");

int llmkit_kernels_version(void) { return 2; }

/* ---- the thread pool ------------------------------------------------------------------------------------ */

typedef void (*task_fn)(void *ctx, int ith, int nth);

#define MAX_THREADS 64
#define SLEEP_AFTER_NS 2000000L

static struct {
    int n;                    /* threads taking part, the caller included (1: no workers) */
    int caller_cpu;           /* the CPU the caller is pinned to in a session */
    atomic_int gen, done, sleeping;
    task_fn fn;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cpu_set_t saved;          /* the caller's affinity before the session */
    int in_session;
    int start_gen;            /* the generation the workers start from */
} pool = {.n = 1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void pin_self(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* A worker: wait for the next generation (spin, yield every 256 spins, sleep after SLEEP_AFTER_NS), run, count. */
static void *worker(void *arg) {
    const int ith = (int)(intptr_t)arg;
    int seen = pool.start_gen;
    for (;;) {
        long start = 0;
        for (int spins = 1; atomic_load_explicit(&pool.gen, memory_order_acquire) == seen; spins++) {
            cpu_relax();
            if (spins % 256) continue;
            sched_yield();
            if (!start) start = now_ns();
            else if (now_ns() - start > SLEEP_AFTER_NS) {
                pthread_mutex_lock(&pool.mu);
                atomic_fetch_add(&pool.sleeping, 1);
                while (atomic_load(&pool.gen) == seen) pthread_cond_wait(&pool.cv, &pool.mu);
                atomic_fetch_sub(&pool.sleeping, 1);
                pthread_mutex_unlock(&pool.mu);
            }
        }
        seen = atomic_load_explicit(&pool.gen, memory_order_acquire);
        pool.fn(pool.ctx, ith, pool.n);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
    return NULL;
}

static void after_fork_in_child(void) { pool.n = 1; pool.in_session = 0; } /* the workers did not survive */

/* Start n - 1 workers (once), pinned to CPUs of the process's mask other than the caller's current one.
 * Returns the number of threads in use (1 when n < 2 or threads cannot be made). */
int llmkit_pool_start(int n) {
    if (pool.n > 1 || n < 2) return pool.n;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed)) return 1;
    int here = sched_getcpu(), cpus[MAX_THREADS], count = 0;
    if (here < 0 || !CPU_ISSET(here, &allowed)) return 1;
    for (int c = 0; c < CPU_SETSIZE && count < MAX_THREADS; c++)
        if (c != here && CPU_ISSET(c, &allowed)) cpus[count++] = c;
    if (n - 1 > count) n = count + 1;
    if (n < 2) return 1;
    pool.caller_cpu = here;
    pool.start_gen = atomic_load(&pool.gen);
    pool.n = n;
    for (int i = 1; i < n; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[i - 1], &one);
        pthread_attr_setaffinity_np(&attr, sizeof one, &one);
        if (pthread_create(&t, &attr, worker, (void *)(intptr_t)i)) { pool.n = i; break; }
        pthread_detach(t);
        pthread_attr_destroy(&attr);
    }
    pthread_atfork(NULL, NULL, after_fork_in_child);
    return pool.n;
}

/* open (1) / close (0) a session: pin the caller to its CPU, or give it back its previous affinity. */
void llmkit_pool_session(int open) {
    if (pool.n < 2 || open == pool.in_session) return;
    if (open) {
        pthread_getaffinity_np(pthread_self(), sizeof pool.saved, &pool.saved);
        pin_self(pool.caller_cpu);
    } else {
        pthread_setaffinity_np(pthread_self(), sizeof pool.saved, &pool.saved);
    }
    pool.in_session = open;
}

/* Whether pool_run may use the workers (1) or runs on the caller alone (0). The decode step always may; the
 * Python side turns it off while PyTorch runs multi-threaded around our calls: its OpenMP workers spin on the
 * same CPUs after each of its ops, and two spinning pools on two CPUs wait on each other for milliseconds. */
static int pool_enabled = 1;

void llmkit_pool_enable(int on) { pool_enabled = on; }

/* Run fn(ctx, i, n) on every thread of the pool (the caller is thread 0) and wait for all of them. */
static void pool_run(task_fn fn, void *ctx) {
    if (pool.n < 2 || !pool_enabled) { fn(ctx, 0, 1); return; }
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
    if (atomic_load(&pool.sleeping)) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
    fn(ctx, 0, pool.n);
    for (int spins = 1; atomic_load_explicit(&pool.done, memory_order_acquire) < pool.n - 1; spins++) {
        cpu_relax();
        if (spins % 256 == 0) sched_yield();
    }
}

/* Rows [lo, hi) of N for thread ith of nth: whole tiles of ROWS, as even as they come. */
#define ROWS 4
static void split_rows(int64_t N, int ith, int nth, int64_t *lo, int64_t *hi) {
    const int64_t tiles = (N + ROWS - 1) / ROWS, per = tiles / nth, extra = tiles % nth;
    const int64_t first = ith * per + (ith < extra ? ith : extra), count = per + (ith < extra);
    *lo = first * ROWS;
    *hi = (first + count) * ROWS < N ? (first + count) * ROWS : N;
}

/* ---- helpers -------------------------------------------------------------------------------------------- */

static inline float f16_to_f32(uint16_t h) {
#ifdef LLMKIT_AVX2
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000 | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#ifdef LLMKIT_AVX2
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline __m256 load_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
#endif

/* out[n0 + r] (+)= v[r] for the rows of the tile below hi */
static inline void store(float *y, int64_t n0, int64_t hi, const float v[ROWS], int accumulate) {
    for (int r = 0; r < ROWS && n0 + r < hi; r++) y[n0 + r] = accumulate ? y[n0 + r] + v[r] : v[r];
}

/* ---- float weights: f32 and bf16 ------------------------------------------------------------------------ */

/* Dot products of ROWS weight rows with one activation row (a tile shares each load of x). */
static void dot4_f32(const float *const w[ROWS], const float *x, int64_t K, float out[ROWS]) {
    int64_t k = 0;
#ifdef LLMKIT_AVX2
    __m256 a[ROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; k + 8 <= K; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
        for (int r = 0; r < ROWS; r++) a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w[r] + k), xv, a[r]);
    }
    for (int r = 0; r < ROWS; r++) out[r] = hsum(a[r]);
#else
    for (int r = 0; r < ROWS; r++) out[r] = 0.0f;
#endif
    for (; k < K; k++)
        for (int r = 0; r < ROWS; r++) out[r] += w[r][k] * x[k];
}

/* Two weight rows against R <= MR_MAX activation rows (batches, speculative verification, prompts): each weight load
 * feeds 2R FMAs into 2R accumulators (R = 6: 12 of the 16 vector registers). Every row sums in dot4_f32's order (8
 * lanes along k, then the lanes, then the tail), so a row's result has the same bits whatever rows come with it.
 * A span [k0, k1) of the vector part: the accumulators start from carry (NULL: zeros) and, unless k1 is the last
 * vector position, go back there unsummed; the span that ends it sums them and adds the tail. Split or whole, a
 * row's sums take the same steps. With this much arithmetic per byte the hardware prefetcher alone leaves the
 * FMAs waiting on memory when the weights stream: the rows at pf0, pf1 (further on) are fetched meanwhile, every
 * pf_every-th cache line from line pf_phase, so that the passes over one tile share its successor's lines. */
#define MR_MAX 6
#define PREFETCH_ROWS 8 /* how far ahead (weight rows) a tile prefetches */
#define NO_PREFETCH (1 << 30) /* as pf_every (a constant): no prefetch code in the loop */
static inline __attribute__((always_inline)) void dot2xR_f32(const float *w0, const float *w1, const float *x,
                                                              int64_t K, int64_t k0, int64_t k1, const int R,
                                                              const float *pf0, const float *pf1, int pf_phase,
                                                              int pf_every, float (*carry)[MR_MAX][2][8],
                                                              float out[MR_MAX][2]) {
    const int64_t K8 = K & ~(int64_t)7;
#ifdef LLMKIT_AVX2
    __m256 a[MR_MAX][2];
    for (int m = 0; m < R; m++)
        for (int j = 0; j < 2; j++) a[m][j] = carry && k0 ? _mm256_loadu_ps((*carry)[m][j]) : _mm256_setzero_ps();
    int wait = pf_phase; /* cache lines (16 floats) until this pass's next prefetch */
    for (int64_t k = k0; k < k1; k += 8) {
        const __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
        if (pf_every != NO_PREFETCH && !(k & 15) && wait-- == 0) {
            PREFETCH(pf0 + k);
            PREFETCH(pf1 + k);
            wait = pf_every - 1;
        }
        for (int m = 0; m < R; m++) {
            __m256 xv = _mm256_loadu_ps(x + m * K + k);
            __asm__("" : "+x"(xv)); /* one load into a register: folded into both FMAs it was loaded twice */
            a[m][0] = _mm256_fmadd_ps(v0, xv, a[m][0]);
            a[m][1] = _mm256_fmadd_ps(v1, xv, a[m][1]);
        }
    }
    if (carry && k1 < K8) {
        for (int m = 0; m < R; m++)
            for (int j = 0; j < 2; j++) _mm256_storeu_ps((*carry)[m][j], a[m][j]);
        return;
    }
    for (int m = 0; m < R; m++) out[m][0] = hsum(a[m][0]), out[m][1] = hsum(a[m][1]);
#else
    (void)k0, (void)k1, (void)pf0, (void)pf1, (void)pf_phase, (void)pf_every, (void)carry;
    for (int m = 0; m < R; m++) out[m][0] = out[m][1] = 0.0f;
    for (int64_t k = 0; k < K8; k++)
        for (int m = 0; m < R; m++) out[m][0] += w0[k] * x[m * K + k], out[m][1] += w1[k] * x[m * K + k];
#endif
    for (int64_t k = K8; k < K; k++)
        for (int m = 0; m < R; m++) out[m][0] += w0[k] * x[m * K + k], out[m][1] += w1[k] * x[m * K + k];
}

/* dot2xR_f32 over all of k, compiled for each R (a constant, so its accumulators stay in registers): tile_f32's */
static void dot2_rows_f32(const float *w0, const float *w1, const float *x, int64_t K, int R, const float *pf0,
                          const float *pf1, int pf_phase, int pf_every, float out[MR_MAX][2]) {
    const int64_t K8 = K & ~(int64_t)7;
    switch (R) {
    case 1: dot2xR_f32(w0, w1, x, K, 0, K8, 1, pf0, pf1, pf_phase, pf_every, NULL, out); break;
    case 2: dot2xR_f32(w0, w1, x, K, 0, K8, 2, pf0, pf1, pf_phase, pf_every, NULL, out); break;
    case 3: dot2xR_f32(w0, w1, x, K, 0, K8, 3, pf0, pf1, pf_phase, pf_every, NULL, out); break;
    case 4: dot2xR_f32(w0, w1, x, K, 0, K8, 4, pf0, pf1, pf_phase, pf_every, NULL, out); break;
    case 5: dot2xR_f32(w0, w1, x, K, 0, K8, 5, pf0, pf1, pf_phase, pf_every, NULL, out); break;
    default: dot2xR_f32(w0, w1, x, K, 0, K8, MR_MAX, pf0, pf1, pf_phase, pf_every, NULL, out); break;
    }
}

static void dot4_bf16(const uint16_t *const w[ROWS], const float *x, int64_t K, float out[ROWS]) {
    int64_t k = 0;
#ifdef LLMKIT_AVX2
    __m256 a[ROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; k + 8 <= K; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
        for (int r = 0; r < ROWS; r++) a[r] = _mm256_fmadd_ps(load_bf16(w[r] + k), xv, a[r]);
    }
    for (int r = 0; r < ROWS; r++) out[r] = hsum(a[r]);
#else
    for (int r = 0; r < ROWS; r++) out[r] = 0.0f;
#endif
    for (; k < K; k++)
        for (int r = 0; r < ROWS; r++) out[r] += bf16_to_f32(w[r][k]) * x[k];
}

/* ---- quantized weights: GGML Q8_0 and Q4_1 against int16 activation blocks ------------------------------ */

/* x [M, K] -> xq [M, K] int16, sx [M, K/32] (scale = absmax / 32767 per block), sxq [M, K/32] (scale * sum of
 * the block's xq). Rounding to nearest keeps each element within scale / 2: below 2^-16 of the block's max.
 * The AVX2 path gives the same bits as the plain one (same products, round-to-nearest-even, same clamp). */
static void quantize_rows_i16(const float *x, int64_t M, int64_t K, int16_t *xq, float *sx, float *sxq) {
    for (int64_t i = 0; i < M * K / QK; i++) {
        const float *b = x + i * QK;
#ifdef LLMKIT_AVX2
        __m256 v[4], top = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(b + 8 * j);
            top = _mm256_max_ps(top, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[j]));
        }
        __m128 t = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
        t = _mm_max_ps(t, _mm_movehl_ps(t, t));
        const float amax = _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)));
        const float s = amax / 32767.0f, inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
        __m256i q[4], sum = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) { /* clamp, then round: the same integers as rounding, then clamping */
            const __m256 y = _mm256_mul_ps(v[j], _mm256_set1_ps(inv));
            q[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-32767.0f)), _mm256_set1_ps(32767.0f)));
            sum = _mm256_add_epi32(sum, q[j]);
        }
        /* packs works per 128-bit lane: the permute puts the four groups of four back in order */
        _mm256_storeu_si256((__m256i *)(xq + i * QK), _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8));
        _mm256_storeu_si256((__m256i *)(xq + i * QK + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xD8));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        const int32_t total = _mm_cvtsi128_si32(s4);
#else
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(b[j]));
        const float s = amax / 32767.0f, inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
        int32_t total = 0;
        for (int j = 0; j < QK; j++) {
            int32_t q = (int32_t)lrintf(b[j] * inv);
            q = q > 32767 ? 32767 : (q < -32767 ? -32767 : q);
            xq[i * QK + j] = (int16_t)q;
            total += q;
        }
#endif
        sx[i] = s;
        sxq[i] = s * (float)total;
    }
}

/* Dot products of a tile of ROWS weight rows with MRQ activation rows (xq rows K apart): each weight block is
 * unpacked once and feeds every activation row. Per (activation, weight) row pair the operations and their
 * order do not depend on mrq, so one row alone and the same row among others give the same bits. */
#define QMR 2
#ifdef LLMKIT_AVX2
static inline __m256 block_dot(__m256i w0, __m256i w1, const int16_t *xq) { /* 32 int16 products, summed in pairs */
    const __m256i x0 = _mm256_loadu_si256((const __m256i *)xq), x1 = _mm256_loadu_si256((const __m256i *)(xq + 16));
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1)));
}
#endif

static inline __attribute__((always_inline)) void dot_q8_0(const block_q8_0 *const w[ROWS], const int16_t *xq,
                                                           const float *sx, int64_t nb, int64_t K, const int mrq,
                                                           float out[][ROWS]) {
#ifdef LLMKIT_AVX2
    __m256 a[QMR][ROWS];
    for (int m = 0; m < mrq; m++)
        for (int r = 0; r < ROWS; r++) a[m][r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        for (int r = 0; r < ROWS; r++) {
            const block_q8_0 *blk = w[r] + b;
            const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)blk->qs));
            const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk->qs + 16)));
            const float d = f16_to_f32(blk->d); /* (one scale a block: gathering four to convert at once was slower) */
            for (int m = 0; m < mrq; m++)
                a[m][r] = _mm256_fmadd_ps(block_dot(w0, w1, xq + m * K + b * QK), _mm256_set1_ps(d * sx[m * nb + b]),
                                          a[m][r]);
        }
    for (int m = 0; m < mrq; m++)
        for (int r = 0; r < ROWS; r++) out[m][r] = hsum(a[m][r]);
#else
    for (int m = 0; m < mrq; m++)
        for (int r = 0; r < ROWS; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int j = 0; j < QK; j++) s += (int32_t)w[r][b].qs[j] * xq[m * K + b * QK + j];
                acc += (float)s * (f16_to_f32(w[r][b].d) * sx[m * nb + b]);
            }
            out[m][r] = acc;
        }
#endif
}

static inline __attribute__((always_inline)) void dot_q4_1(const block_q4_1 *const w[ROWS], const int16_t *xq,
                                                           const float *sx, const float *sxq, int64_t nb, int64_t K,
                                                           const int mrq, float out[][ROWS]) {
#ifdef LLMKIT_AVX2
    /* The tile's four block headers (d, m as f16) convert in one instruction: [d0 m0 d1 m1 d2 m2 d3 m3]. Row r's
     * scale d_r * s_x is lane 2r of that times s_x, and the bias terms m_r * sxq accumulate in lane 2r + 1 of
     * one vector per activation row: the same products and sums, in the same order, as one row at a time. */
    const __m256i low4 = _mm256_set1_epi16(0x0f);
    __m256 a[QMR][ROWS], bias[QMR];
    for (int m = 0; m < mrq; m++) {
        bias[m] = _mm256_setzero_ps();
        for (int r = 0; r < ROWS; r++) a[m][r] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        int32_t head[ROWS];
        for (int r = 0; r < ROWS; r++) memcpy(head + r, &w[r][b], sizeof(int32_t)); /* d, m */
        const __m256 dm = _mm256_cvtph_ps(_mm_setr_epi32(head[0], head[1], head[2], head[3]));
        __m256 scale[QMR];
        for (int m = 0; m < mrq; m++) {
            scale[m] = _mm256_mul_ps(dm, _mm256_set1_ps(sx[m * nb + b]));
            bias[m] = _mm256_add_ps(bias[m], _mm256_mul_ps(dm, _mm256_set1_ps(sxq[m * nb + b])));
        }
        for (int r = 0; r < ROWS; r++) {
            /* the 16 bytes widened once, then split: 0-15 the low nibbles, 16-31 the high (one lane-crossing
             * widening a block instead of two: 6.9 -> 9.4 GB/s a thread, the same integers) */
            const __m256i raw = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w[r][b].qs));
            const __m256i w0 = _mm256_and_si256(raw, low4), w1 = _mm256_srli_epi16(raw, 4);
            const __m256i lane = _mm256_set1_epi32(2 * r);
            for (int m = 0; m < mrq; m++)
                a[m][r] = _mm256_fmadd_ps(block_dot(w0, w1, xq + m * K + b * QK),
                                          _mm256_permutevar8x32_ps(scale[m], lane), a[m][r]);
        }
    }
    for (int m = 0; m < mrq; m++) {
        float terms[8];
        _mm256_storeu_ps(terms, bias[m]);
        for (int r = 0; r < ROWS; r++) out[m][r] = hsum(a[m][r]) + terms[2 * r + 1];
    }
#else
    for (int m = 0; m < mrq; m++)
        for (int r = 0; r < ROWS; r++) {
            float acc = 0.0f, bias = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const block_q4_1 *blk = w[r] + b;
                const int16_t *x = xq + m * K + b * QK;
                int32_t s = 0;
                for (int j = 0; j < QK / 2; j++) s += (blk->qs[j] & 15) * x[j] + (blk->qs[j] >> 4) * x[j + 16];
                acc += (float)s * (f16_to_f32(blk->d) * sx[m * nb + b]);
                bias += f16_to_f32(blk->m) * sxq[m * nb + b];
            }
            out[m][r] = acc + bias;
        }
#endif
}

/* ---- products: y [M, N] (+)= x [M, K] W^T, in tiles of ROWS output rows ------------------------------------
 * One pool run computes one product or several against the same x (q, k and v; gate and up): fewer barriers,
 * and the quantized formats share one int16 copy of x. */

#define M_CHUNK 64 /* activation rows per int16 copy, so a chunk's copy stays in L2 while the weights stream */

typedef struct {
    int64_t fmt, N, K;         /* W [N, K] held as fmt */
    const void *W;
    const float *x;            /* x [M, K] */
    const int16_t *xq;         /* rows m0 .. m0 + mc of x as int16 blocks, with sx, sxq (quantized formats) */
    const float *sx, *sxq;
    float *y;                  /* y [M, N] */
    int64_t m0, mc;            /* the activation rows of this run */
    int accumulate;
} product_t;

/* Rows n0 .. n0 + ROWS - 1 (those below N) of one product, for its rows m0 .. m0 + mc - 1 of x. One row of x:
 * dot4_f32 (memory-bound). More: the tile as two pairs of weight rows, the rows of x in as few passes of at most
 * MR_MAX as there can be, of even sizes (16 rows: 6, 5, 5). */
static void tile_f32(const product_t *p, int64_t n0) {
    const float *w[ROWS];
    for (int r = 0; r < ROWS; r++) w[r] = (const float *)p->W + (n0 + r < p->N ? n0 + r : p->N - 1) * p->K;
    const float *x = p->x + p->m0 * p->K;
    float *y = p->y + p->m0 * p->N;
    if (p->mc == 1) {
        float v[ROWS];
        dot4_f32(w, x, p->K, v);
        store(y, n0, p->N, v, p->accumulate);
        return;
    }
    /* rows PREFETCH_ROWS on (the last tiles: their own rows again), a share of their lines in each pass */
    const int64_t ahead = n0 + ROWS + PREFETCH_ROWS <= p->N ? PREFETCH_ROWS * p->K : 0;
    const int passes = (int)((p->mc + MR_MAX - 1) / MR_MAX);
    for (int pass = 0, m = 0; m < p->mc; pass++) {
        const int R = (int)((p->mc - m + passes - pass - 1) / (passes - pass));
        for (int half = 0; half < ROWS; half += 2) {
            float v[MR_MAX][2];
            dot2_rows_f32(w[half], w[half + 1], x + m * p->K, p->K, R, w[half] + ahead, w[half + 1] + ahead, pass,
                          passes, v);
            for (int i = 0; i < R; i++)
                for (int r = 0; r < 2 && n0 + half + r < p->N; r++) {
                    float *out = y + (m + i) * p->N + n0 + half + r;
                    *out = p->accumulate ? *out + v[i][r] : v[i][r];
                }
        }
        m += R;
    }
}

enum { FMT_F32 = 0, FMT_BF16 = 1, FMT_Q8_0 = 2, FMT_Q4_1 = 3 };

/* row r of W [*, k] held as fmt, as float32 (the GGML formats: gguf.quants.dequantize's values) */
static void row_f32(int64_t fmt, const void *w, int64_t k, int64_t r, float *out) {
    const int64_t nb = k / QK;
    if (fmt == FMT_F32) memcpy(out, (const float *)w + r * k, k * sizeof(float));
    else if (fmt == FMT_BF16)
        for (int64_t i = 0; i < k; i++) out[i] = bf16_to_f32(((const uint16_t *)w)[r * k + i]);
    else if (fmt == FMT_Q8_0)
        for (int64_t b = 0; b < nb; b++) {
            const block_q8_0 *blk = (const block_q8_0 *)w + r * nb + b;
            const float d = f16_to_f32(blk->d);
            for (int j = 0; j < QK; j++) out[b * QK + j] = blk->qs[j] * d;
        }
    else
        for (int64_t b = 0; b < nb; b++) {
            const block_q4_1 *blk = (const block_q4_1 *)w + r * nb + b;
            const float d = f16_to_f32(blk->d), m = f16_to_f32(blk->m);
            for (int j = 0; j < QK / 2; j++) {
                out[b * QK + j] = d * (blk->qs[j] & 15) + m;
                out[b * QK + j + QK / 2] = d * (blk->qs[j] >> 4) + m;
            }
        }
}

/* Rows [n_lo, n_hi) of a product of many rows of x (a prompt: compute-bound), in float32. Streamed tile by tile, the
 * MR_MAX rows of x a pair of weight rows meets come from L2 or beyond: too slow to feed the FMAs. Blocked instead
 * (the loop order of a GEMM, without its packing: both operands are already contiguous along k):
 *
 *     for each block of GEMM_BLOCK weight rows            (~110 KB for K = 576: stays in L2)
 *       for each group of <= MR_MAX rows of x              (passes of even sizes, as tile_f32's)
 *         for each span of <= GEMM_KC of k                 (the group's span stays in L1: 6 x 768 floats = 18 KB)
 *           for each pair of the block's rows: dot2xR_f32, the partial sums carried between spans
 *
 * Every output still sums in dot4_f32's order: the same bits as a row alone. Weights in another format are
 * converted a block at a time into ``block`` [GEMM_BLOCK, K] (the thread's own; it stays in L2 for the block's
 * groups): exact float32 products of the dequantized weights, as the module path's GEMM computes them. */
#define GEMM_MIN_ROWS 17 /* fewer rows of x: the tiles (the weights stream from memory once per call) */
#define GEMM_BLOCK 48
#define GEMM_KC 768
/* The pairs of weight rows [b0, b1) against R rows of x over the span [k0, k1) (R a constant: one loop per R) */
static inline __attribute__((always_inline)) void span_pairs_f32(const product_t *p, const float *wb, const float *x,
                                                                 float *y, int64_t b0, int64_t b1, int64_t k0,
                                                                 int64_t k1, const int R, float (*carry)[MR_MAX][2][8]) {
    const int64_t K = p->K, N = p->N;
    const int last = k1 == (K & ~(int64_t)7);
    for (int64_t n = b0; n < b1; n += 2) { /* wb: row b0 */
        const float *w0 = wb + (n - b0) * K, *w1 = wb + ((n + 1 < N ? n + 1 : n) - b0) * K;
        float v[MR_MAX][2];
        dot2xR_f32(w0, w1, x, K, k0, k1, R, w0, w1, NO_PREFETCH, NO_PREFETCH, carry + (n - b0) / 2, v);
        if (!last) continue;
        for (int i = 0; i < R; i++)
            for (int r = 0; r < 2 && n + r < N; r++) {
                float *out = y + i * N + n + r;
                *out = p->accumulate ? *out + v[i][r] : v[i][r];
            }
    }
}

static void span_f32(const product_t *p, int64_t n_lo, int64_t n_hi, float *block) {
#ifdef LLMKIT_AVX2
    const int64_t K = p->K, K8 = K & ~(int64_t)7, spans = K8 ? (K8 + GEMM_KC - 1) / GEMM_KC : 1;
#else /* the plain kernel sums all of k at once */
    const int64_t K = p->K, K8 = K & ~(int64_t)7, spans = 1;
#endif
    const float *x = p->x + p->m0 * K;
    float *y = p->y + p->m0 * p->N;
    float carry[GEMM_BLOCK / 2][MR_MAX][2][8] __attribute__((aligned(32))); /* 9 KB */
    const int groups = (int)((p->mc + MR_MAX - 1) / MR_MAX);
    for (int64_t b0 = n_lo; b0 < n_hi; b0 += GEMM_BLOCK) {
        const int64_t b1 = b0 + GEMM_BLOCK < n_hi ? b0 + GEMM_BLOCK : n_hi;
        const float *wb = p->fmt == FMT_F32 ? (const float *)p->W + b0 * K : block;
        for (int64_t r = b0; p->fmt != FMT_F32 && r < b1; r++) row_f32(p->fmt, p->W, K, r, block + (r - b0) * K);
        for (int group = 0, m = 0; m < p->mc; group++) {
            const int R = (int)((p->mc - m + groups - group - 1) / (groups - group));
            for (int64_t s = 0; s < spans; s++) {
                const int64_t k0 = K8 * s / spans & ~(int64_t)7, k1 = K8 * (s + 1) / spans & ~(int64_t)7;
                const float *xm = x + m * K;
                float *ym = y + m * p->N;
                switch (R) {
                case 1: span_pairs_f32(p, wb, xm, ym, b0, b1, k0, k1, 1, carry); break;
                case 2: span_pairs_f32(p, wb, xm, ym, b0, b1, k0, k1, 2, carry); break;
                case 3: span_pairs_f32(p, wb, xm, ym, b0, b1, k0, k1, 3, carry); break;
                case 4: span_pairs_f32(p, wb, xm, ym, b0, b1, k0, k1, 4, carry); break;
                case 5: span_pairs_f32(p, wb, xm, ym, b0, b1, k0, k1, 5, carry); break;
                default: span_pairs_f32(p, wb, xm, ym, b0, b1, k0, k1, MR_MAX, carry); break;
                }
            }
            m += R;
        }
    }
}

static void tile_bf16(const product_t *p, int64_t n0) {
    const uint16_t *w[ROWS];
    for (int r = 0; r < ROWS; r++) w[r] = (const uint16_t *)p->W + (n0 + r < p->N ? n0 + r : p->N - 1) * p->K;
    for (int64_t m = 0; m < p->mc; m++) {
        float v[ROWS];
        dot4_bf16(w, p->x + (p->m0 + m) * p->K, p->K, v);
        store(p->y + (p->m0 + m) * p->N, n0, p->N, v, p->accumulate);
    }
}

/* A quantized tile first asks for the tile QPF_TILES on (its rows are contiguous: one prefetch per cache line).
 * The hardware prefetcher alone held a thread's Q8_0 stream at ~6.5 GB/s against 17 GB/s for a plain read;
 * with this, 15 GB/s (Q4_1, compute-bound: 6.5 -> 7.5; measured with the weights in DRAM, one thread). */
#define QPF_TILES 2
/* NAME: the tile function of one quantized format; DOT(w, xq, sx, sxq, nb, K, mrq, out) its dot kernel */
#define QUANTIZED_TILE(NAME, BLOCK, DOT)                                                                        \
    static void NAME(const product_t *p, int64_t n0) {                                                         \
        const int64_t nb = p->K / QK;                                                                          \
        const BLOCK *w[ROWS];                                                                                  \
        for (int r = 0; r < ROWS; r++) w[r] = (const BLOCK *)p->W + (n0 + r < p->N ? n0 + r : p->N - 1) * nb;   \
        float *y = p->y + p->m0 * p->N;                                                                        \
        if (n0 + (QPF_TILES + 1) * ROWS <= p->N) {                                                              \
            const char *next = (const char *)(w[0] + QPF_TILES * ROWS * nb);                                   \
            for (int64_t at = 0; at < ROWS * nb * (int64_t)sizeof(BLOCK); at += 64) PREFETCH(next + at);         \
        }                                                                                                      \
        int64_t m = 0;                                                                                         \
        for (; m + QMR <= p->mc; m += QMR) {                                                                   \
            float v[QMR][ROWS];                                                                                \
            DOT(w, p->xq + m * p->K, p->sx + m * nb, p->sxq + m * nb, nb, p->K, QMR, v);                       \
            for (int i = 0; i < QMR; i++) store(y + (m + i) * p->N, n0, p->N, v[i], p->accumulate);            \
        }                                                                                                      \
        for (; m < p->mc; m++) {                                                                               \
            float v[1][ROWS];                                                                                  \
            DOT(w, p->xq + m * p->K, p->sx + m * nb, p->sxq + m * nb, nb, p->K, 1, v);                         \
            store(y + m * p->N, n0, p->N, v[0], p->accumulate);                                                \
        }                                                                                                      \
    }

#define DOT_Q8_0(w, xq, sx, sxq, nb, K, mrq, out) dot_q8_0(w, xq, sx, nb, K, mrq, out)
QUANTIZED_TILE(tile_q8_0, block_q8_0, DOT_Q8_0)
QUANTIZED_TILE(tile_q4_1, block_q4_1, dot_q4_1)

typedef struct {
    const product_t *ps;
    int count;
    float *blocks; /* many rows of x and weights not in float32: per thread [GEMM_BLOCK, K] (span_f32) */
} products_t;

/* The tiles of all the products, numbered one after another, split evenly among the threads. */
static void task_products(void *ctx, int ith, int nth) {
    const products_t *g = ctx;
    int64_t total = 0;
    for (int i = 0; i < g->count; i++) total += (g->ps[i].N + ROWS - 1) / ROWS;
    const int64_t per = total / nth, extra = total % nth;
    int64_t t = ith * per + (ith < extra ? ith : extra);
    const int64_t end = t + per + (ith < extra);
    int64_t base = 0;
    for (int i = 0; i < g->count && t < end; i++) {
        const product_t *p = g->ps + i;
        const int64_t tiles = (p->N + ROWS - 1) / ROWS;
        if (p->mc >= GEMM_MIN_ROWS) { /* this thread's rows of p at once */
            const int64_t stop = end < base + tiles ? end : base + tiles;
            if (t < stop)
                span_f32(p, (t - base) * ROWS, stop - base < tiles ? (stop - base) * ROWS : p->N,
                         g->blocks ? g->blocks + ith * GEMM_BLOCK * p->K : NULL);
            t = stop > t ? stop : t;
        }
        for (; t < end && t < base + tiles; t++) {
            const int64_t n0 = (t - base) * ROWS;
            if (p->fmt == FMT_F32) tile_f32(p, n0);
            else if (p->fmt == FMT_BF16) tile_bf16(p, n0);
            else if (p->fmt == FMT_Q8_0) tile_q8_0(p, n0);
            else tile_q4_1(p, n0);
        }
        base += tiles;
    }
}

/* Every ps[i] (fmt, N, K, W, y, accumulate set; all with the same K) against x [M, K]. Few rows: in one pool run
 * per chunk of M_CHUNK rows (quantized weights: against an int16 copy of the chunk). GEMM_MIN_ROWS and more: in
 * one pool run, span_f32 (weights not in float32 converted a block at a time). 0, or -1 (a quantized format and
 * K not a multiple of 32), -2 (out of memory), -3 (an unknown format). */
static int run_products(product_t *ps, int count, const float *x, int64_t M) {
    const int64_t K = ps[0].K, nb = K / QK;
    int quantized = 0, converted = 0;
    for (int i = 0; i < count; i++) {
        if (ps[i].fmt < FMT_F32 || ps[i].fmt > FMT_Q4_1) return -3;
        quantized |= ps[i].fmt >= FMT_Q8_0;
        converted |= ps[i].fmt != FMT_F32;
    }
    if (quantized && K % QK) return -1;
    const int span = M >= GEMM_MIN_ROWS;
    const int64_t chunk = span || !quantized ? M : (M < M_CHUNK ? M : M_CHUNK);
    int16_t *xq = NULL;
    float *sx = NULL, *sxq = NULL, *blocks = NULL;
    if (quantized && !span) {
        xq = malloc(chunk * K * sizeof(int16_t));
        sx = malloc(chunk * nb * sizeof(float));
        sxq = malloc(chunk * nb * sizeof(float));
        if (!xq || !sx || !sxq) { free(xq); free(sx); free(sxq); return -2; }
    }
    if (span && converted && !(blocks = malloc(pool.n * GEMM_BLOCK * K * sizeof(float))))
        return -2;
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
        const int64_t mc = M - m0 < chunk ? M - m0 : chunk;
        if (xq) quantize_rows_i16(x + m0 * K, mc, K, xq, sx, sxq);
        for (int i = 0; i < count; i++) {
            ps[i].x = x, ps[i].xq = xq, ps[i].sx = sx, ps[i].sxq = sxq;
            ps[i].m0 = m0, ps[i].mc = mc;
        }
        products_t g = {ps, count, blocks};
        pool_run(task_products, &g);
    }
    free(xq); free(sx); free(sxq); free(blocks);
    return 0;
}

static int matvec(int64_t fmt, const void *W, const float *x, float *y, int64_t M, int64_t N, int64_t K, int accumulate) {
    product_t p = {.fmt = fmt, .N = N, .K = K, .W = W, .y = y, .accumulate = accumulate};
    return run_products(&p, 1, x, M);
}

int matvec_f32(const void *W, const float *x, float *y, int64_t M, int64_t N, int64_t K, int accumulate) {
    return matvec(FMT_F32, W, x, y, M, N, K, accumulate);
}

int matvec_bf16(const void *W, const float *x, float *y, int64_t M, int64_t N, int64_t K, int accumulate) {
    return matvec(FMT_BF16, W, x, y, M, N, K, accumulate);
}

int matvec_q8_0(const void *W, const float *x, float *y, int64_t M, int64_t N, int64_t K, int accumulate) {
    return matvec(FMT_Q8_0, W, x, y, M, N, K, accumulate);
}

int matvec_q4_1(const void *W, const float *x, float *y, int64_t M, int64_t N, int64_t K, int accumulate) {
    return matvec(FMT_Q4_1, W, x, y, M, N, K, accumulate);
}

/* ---- RMSNorm -------------------------------------------------------------------------------------------- */

void rms_norm(const float *x, const float *g, float *y, int64_t M, int64_t D, float eps) {
    for (int64_t m = 0; m < M; m++) {
        const float *row = x + m * D;
        float *out = y + m * D;
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)row[i] * row[i];
        float r = 1.0f / sqrtf((float)(ss / (double)D) + eps);
        for (int64_t i = 0; i < D; i++) out[i] = g[i] * (row[i] * r);
    }
}

/* ---- RoPE, half-split layout, in place -------------------------------------------------------------------
 * x: [B, H, T, D] with strides (xb, xh, xt, 1); cos, sin: [B or 1, T, d_rot] with strides (cb, ct, 1), cb = 0
 * when one table serves every batch row. Pairs (i, i + d_rot/2) for i < d_rot/2; features >= d_rot untouched. */
void rope_half(float *x, const float *cos, const float *sin, int64_t B, int64_t H, int64_t T, int64_t d_rot,
               int64_t xb, int64_t xh, int64_t xt, int64_t cb, int64_t ct) {
    const int64_t half = d_rot / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                float *v = x + b * xb + h * xh + t * xt;
                const float *c = cos + b * cb + t * ct, *s = sin + b * cb + t * ct;
                for (int64_t i = 0; i < half; i++) {
                    float a0 = v[i], a1 = v[i + half];
                    v[i] = a0 * c[i] - a1 * s[i];
                    v[i + half] = a1 * c[i + half] + a0 * s[i + half];
                }
            }
}

/* ---- attention of one query per head over cached keys ----------------------------------------------------
 * q: [B, H, D] (strides qb, qh, 1); k, v: [B, KV, L, D] (strides kb, kh, D, 1, the same for v); out: [B, H, D]
 * contiguous. Query head h reads KV head h / (H / KV) (GQA). Keys j < start are hidden (a sliding window),
 * and those with pad[b * L + j] == 0 when pad is given. scores = q.k * scale; softmax in float; out = p V.
 * The (batch, head) pairs are split among the pool's threads. */

#ifdef LLMKIT_AVX2
/* e^x for 8 floats: 2^n e^r with n = round(x log2 e), r = x - n ln 2 (in two parts), e^r by its degree-6
 * Taylor-Horner polynomial (|r| <= ln2/2: relative error < 2e-7); below -87.3 the result is 0. */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.7f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 e = _mm256_set1_ps(1.0f / 720);
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 120));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 24));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f / 6));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(0.5f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f));
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(1.0f));
    __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(e, _mm256_castsi256_ps(pow2n)));
}
#endif

typedef struct {
    const float *q, *k, *v;
    float *out;
    const uint8_t *pad;
    int64_t B, H, KV, L, D, start, qb, qh, kb, kh;
    float scale;
} attend_args;

static float dot(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#ifdef LLMKIT_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    s = hsum(acc);
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

#ifdef LLMKIT_AVX2
/* The 8 horizontal sums of a[0..7], as one vector [sum a[0], ..., sum a[7]] (3 levels of hadd, one add). */
static inline __m256 hsum8(const __m256 a[8]) {
    const __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20), _mm256_permute2f128_ps(h0123, h4567, 0x31));
}
#endif

/* One query row: out [D] = softmax(q K[j]^T * scale over start <= j < L, mask[j] != 0) V; p: L + 8 floats of
 * scratch. Scores of 8 keys at a time (each q load feeds 8 FMAs, one transposing reduction for the 8 sums);
 * the weighted sum of V in registers, 64 columns at a time. All keys hidden: zeros (callers never ask). */
static void attend_row(const float *qv, const float *kk, const float *vv, const uint8_t *mask, int64_t start,
                       int64_t L, int64_t D, float scale, float *p, float *o) {
    int64_t j = start;
#ifdef LLMKIT_AVX2
    if (D % 8 == 0)
        for (; j + 8 <= L; j += 8) {
            __m256 acc[8];
            for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
            for (int64_t d = 0; d < D; d += 8) {
                const __m256 qd = _mm256_loadu_ps(qv + d);
                for (int t = 0; t < 8; t++) acc[t] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kk + (j + t) * D + d), acc[t]);
            }
            _mm256_storeu_ps(p + j, _mm256_mul_ps(hsum8(acc), _mm256_set1_ps(scale)));
        }
#endif
    for (; j < L; j++) p[j] = dot(qv, kk + j * D, D) * scale;
    float top = -INFINITY, denom = 0.0f;
    j = start;
    if (mask)
        for (; j < L; j++) p[j] = mask[j] ? p[j] : -INFINITY;
    j = start;
#ifdef LLMKIT_AVX2
    __m256 top8 = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= L; j += 8) top8 = _mm256_max_ps(top8, _mm256_loadu_ps(p + j));
    __m128 t4 = _mm_max_ps(_mm256_castps256_ps128(top8), _mm256_extractf128_ps(top8, 1));
    t4 = _mm_max_ps(t4, _mm_movehl_ps(t4, t4));
    top = _mm_cvtss_f32(_mm_max_ss(t4, _mm_movehdup_ps(t4)));
#endif
    for (; j < L; j++) top = p[j] > top ? p[j] : top;
    for (int64_t i = 0; i < D; i++) o[i] = 0.0f;
    if (top == -INFINITY) return;
    j = start;
#ifdef LLMKIT_AVX2
    __m256 sum = _mm256_setzero_ps();
    for (; j + 8 <= L; j += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + j), _mm256_set1_ps(top)));
        _mm256_storeu_ps(p + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    denom = hsum(sum);
#endif
    for (; j < L; j++) {
        p[j] = expf(p[j] - top);
        denom += p[j];
    }
    const float inv = 1.0f / denom;
    int64_t c0 = 0;
#ifdef LLMKIT_AVX2
    for (; c0 + 64 <= D; c0 += 64) { /* 64 columns: 8 accumulators held in registers across the keys */
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (j = start; j < L; j++) {
            if (p[j] == 0.0f) continue;
            const __m256 e = _mm256_set1_ps(p[j]);
            const float *vj = vv + j * D + c0;
            for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj + 8 * i), acc[i]);
        }
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(o + c0 + 8 * i, _mm256_mul_ps(acc[i], _mm256_set1_ps(inv)));
    }
#endif
    if (c0 < D) {
        for (j = start; j < L; j++)
            if (p[j] != 0.0f)
                for (int64_t i = c0; i < D; i++) o[i] += p[j] * vv[j * D + i];
        for (int64_t i = c0; i < D; i++) o[i] *= inv;
    }
}

static void task_attend(void *ctx, int ith, int nth) {
    const attend_args *a = ctx;
    const int64_t pairs = a->B * a->H, group = a->H / a->KV;
    float *p = malloc((a->L + 8) * sizeof(float));
    for (int64_t bh = ith; bh < pairs; bh += nth) {
        const int64_t b = bh / a->H, h = bh % a->H;
        attend_row(a->q + b * a->qb + h * a->qh, a->k + b * a->kb + (h / group) * a->kh,
                   a->v + b * a->kb + (h / group) * a->kh, a->pad ? a->pad + b * a->L : NULL, a->start, a->L, a->D,
                   a->scale, p, a->out + bh * a->D);
    }
    free(p);
}

void attend_one(const float *q, const float *k, const float *v, float *out, const uint8_t *pad, int64_t B,
                int64_t H, int64_t KV, int64_t L, int64_t D, int64_t start, int64_t qb, int64_t qh, int64_t kb,
                int64_t kh, float scale) {
    attend_args a = {q, k, v, out, pad, B, H, KV, L, D, start, qb, qh, kb, kh, scale};
    if (B * H * L * D < (1 << 14)) task_attend(&a, 0, 1); /* too little to share */
    else pool_run(task_attend, &a);
}

/* M consecutive rows of one sequence at cache slots pos .. pos + M - 1, each query row r seeing slots start(r) ..
 * pos + r of the cache (causal; a window hides the older ones): q, out [M, H * D]; k, v: [KV, stride / D, D].
 * One pool run for all of them.
 *
 * Few rows (a speculative verification), a window, or no AVX2: attend_row per row and head, rows dealt out in
 * turn (row r's cost grows with r: even shares), the bits of a decoding step's attention. Many rows (a prompt):
 * as two small GEMMs per tile of QT queries that share a KV head (GQA: the group's heads of consecutive rows),
 *
 *     S = (Q scale) K^T      [QT, L]   K^T from a transposed copy of the head's keys, 16 keys per step
 *     P = softmax(S)                   per query over its own visible keys (the rest: 0)
 *     O = P V                [QT, D]   16 columns of V per pass
 *
 * each an outer product of QT broadcast values against 16 contiguous floats into 2 QT accumulators (QT = 6:
 * 12 registers, 8 loads per 12 FMAs), where attend_row's 8 keys against 1 query needed a reduction per key. */
#define ATTN_TILE_MIN_ROWS 17
#define QT 6
typedef struct {
    const float *q, *k, *v;
    float *out;
    int64_t M, H, KV, D, pos, window, stride;
    float scale;
    float *kt;      /* the tiled path: [KV, L16 / 16, D, 16] the keys transposed by 16, zeros past L */
    int64_t L16;    /* pos + M rounded up to 16 */
    float *scratch; /* per thread: scores of QT queries [QT, L16] (tiles), or of one row [L16 + 8] */
} causal_args;

static void task_attend_causal(void *ctx, int ith, int nth) {
    const causal_args *a = ctx;
    const int64_t group = a->H / a->KV;
    float *p = a->scratch + ith * (a->L16 + 8);
    for (int64_t r = ith; r < a->M; r += nth) {
        const int64_t at = a->pos + r, start = a->window > 0 && at + 1 > a->window ? at + 1 - a->window : 0;
        for (int64_t h = 0; h < a->H; h++)
            attend_row(a->q + (r * a->H + h) * a->D, a->k + (h / group) * a->stride, a->v + (h / group) * a->stride,
                       NULL, start, at + 1, a->D, a->scale, p, a->out + (r * a->H + h) * a->D);
    }
}

#ifdef LLMKIT_AVX2
/* k transposed in blocks of 16 keys: kt[g][j / 16][d][j % 16] = k[g][j][d] for j < pos + M, 0 up to L16; KV
 * heads dealt out */
static void task_transpose_keys(void *ctx, int ith, int nth) {
    const causal_args *a = ctx;
    const int64_t L = a->pos + a->M;
    for (int64_t g = ith; g < a->KV; g += nth) {
        float *kt = a->kt + g * a->D * a->L16;
        const float *k = a->k + g * a->stride;
        for (int64_t j = 0; j < a->L16; j++) /* block j / 16: [D][16] */
            for (int64_t d = 0; d < a->D; d++) kt[(j / 16 * a->D + d) * 16 + j % 16] = j < L ? k[j * a->D + d] : 0.0f;
    }
}

/* One tile: the n <= QT queries (row rows[i], head heads[i]) of KV head g. s: [QT, L16] scratch. */
static void attend_tile(const causal_args *a, int64_t g, int n, const int64_t rows[QT], const int64_t heads[QT],
                        float *s) {
    const int64_t D = a->D, L16 = a->L16, nq = a->H * D;
    int64_t L = 0, seen[QT];
    float qs[QT][256] __attribute__((aligned(32))); /* the scaled queries (D <= 256) */
    for (int i = 0; i < QT; i++) {
        const int t = i < n ? i : n - 1; /* a short tile repeats its last query; its results are dropped */
        seen[i] = a->pos + rows[t] + 1;
        L = seen[i] > L ? seen[i] : L;
        const float *q = a->q + rows[t] * nq + heads[t] * D;
        for (int64_t d = 0; d < D; d++) qs[i][d] = q[d] * a->scale;
    }
    const float *kt = a->kt + g * D * L16, *v = a->v + g * a->stride;
    for (int64_t j = 0; j < L; j += 16) { /* S = Q K^T */
        __m256 acc[QT][2];
        for (int i = 0; i < QT; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            const __m256 k0 = _mm256_load_ps(kt + (j * D + d * 16)), k1 = _mm256_load_ps(kt + (j * D + d * 16) + 8);
            for (int i = 0; i < QT; i++) {
                const __m256 qd = _mm256_broadcast_ss(&qs[i][d]);
                acc[i][0] = _mm256_fmadd_ps(qd, k0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(qd, k1, acc[i][1]);
            }
        }
        for (int i = 0; i < QT; i++) {
            _mm256_storeu_ps(s + i * L16 + j, acc[i][0]);
            _mm256_storeu_ps(s + i * L16 + j + 8, acc[i][1]);
        }
    }
    const int64_t L8 = (L + 7) & ~(int64_t)7;
    for (int i = 0; i < QT; i++) { /* P = softmax(S) over each query's keys, 0 past them (up to L8) */
        float *si = s + i * L16;
        for (int64_t j = seen[i]; j < L8; j++) si[j] = -INFINITY;
        __m256 top8 = _mm256_set1_ps(-INFINITY), sum8 = _mm256_setzero_ps();
        for (int64_t j = 0; j < L8; j += 8) top8 = _mm256_max_ps(top8, _mm256_loadu_ps(si + j));
        __m128 t4 = _mm_max_ps(_mm256_castps256_ps128(top8), _mm256_extractf128_ps(top8, 1));
        t4 = _mm_max_ps(t4, _mm_movehl_ps(t4, t4));
        const __m256 top = _mm256_set1_ps(_mm_cvtss_f32(_mm_max_ss(t4, _mm_movehdup_ps(t4))));
        for (int64_t j = 0; j < L8; j += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(si + j), top));
            _mm256_storeu_ps(si + j, e);
            sum8 = _mm256_add_ps(sum8, e);
        }
        const __m256 inv = _mm256_set1_ps(1.0f / hsum(sum8));
        for (int64_t j = 0; j < L8; j += 8) _mm256_storeu_ps(si + j, _mm256_mul_ps(_mm256_loadu_ps(si + j), inv));
    }
    for (int64_t c = 0; c < D; c += 16) { /* O = P V, 16 columns per pass */
        __m256 acc[QT][2];
        for (int i = 0; i < QT; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        for (int64_t j = 0; j < L; j++) {
            const __m256 v0 = _mm256_loadu_ps(v + j * D + c), v1 = _mm256_loadu_ps(v + j * D + c + 8);
            for (int i = 0; i < QT; i++) {
                const __m256 pj = _mm256_broadcast_ss(s + i * L16 + j);
                acc[i][0] = _mm256_fmadd_ps(pj, v0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(pj, v1, acc[i][1]);
            }
        }
        float o[QT][16] __attribute__((aligned(32))); /* every accumulator stored at a constant index: in registers */
        for (int i = 0; i < QT; i++) {
            _mm256_store_ps(o[i], acc[i][0]);
            _mm256_store_ps(o[i] + 8, acc[i][1]);
        }
        for (int i = 0; i < n; i++) memcpy(a->out + rows[i] * nq + heads[i] * D + c, o[i], sizeof o[i]);
    }
}

/* Tiles of QT queries of one KV head: its group's heads of consecutive rows, in order; tile t to thread t % nth
 * (consecutive tiles cost about the same: even shares). */
static void task_attend_tiles(void *ctx, int ith, int nth) {
    const causal_args *a = ctx;
    const int64_t group = a->H / a->KV, per_head = a->M * group, tiles = (per_head + QT - 1) / QT;
    float *s = a->scratch + ith * QT * a->L16;
    for (int64_t t = ith; t < a->KV * tiles; t += nth) {
        const int64_t g = t % a->KV, first = (t / a->KV) * QT;
        int64_t rows[QT], heads[QT];
        int n = 0;
        for (int64_t e = first; e < per_head && n < QT; e++, n++) rows[n] = e / group, heads[n] = g * group + e % group;
        attend_tile(a, g, n, rows, heads, s);
    }
}
#endif

/* The M rows' attention (see causal_args): 0, or -2 (out of memory). */
static int attend_causal(causal_args *a) {
    a->L16 = (a->pos + a->M + 15) & ~(int64_t)15;
    const int64_t threads = pool.n; /* 1 without workers */
#ifdef LLMKIT_AVX2
    if (a->M >= ATTN_TILE_MIN_ROWS && a->window == 0 && a->D % 16 == 0 && a->D <= 256) {
        a->kt = aligned_alloc(32, a->KV * a->D * a->L16 * sizeof(float));
        a->scratch = aligned_alloc(32, threads * QT * a->L16 * sizeof(float));
        if (a->kt && a->scratch) {
            pool_run(task_transpose_keys, a);
            pool_run(task_attend_tiles, a);
        }
        const int code = a->kt && a->scratch ? 0 : -2;
        free(a->kt);
        free(a->scratch);
        return code;
    }
#endif
    a->scratch = malloc(threads * (a->L16 + 8) * sizeof(float));
    if (!a->scratch) return -2;
    pool_run(task_attend_causal, a);
    free(a->scratch);
    return 0;
}

/* ---- one decoding step of a LLaMA-family decoder -----------------------------------------------------------
 * The composition nn/model.py's Transformer runs for one new token of one sequence, with the kernels above:
 *
 *     x = embed[token]
 *     per layer:  h = rms_norm(x) g_attn;  q, k, v = h W_q (+b), h W_k (+b), h W_v (+b)
 *                 q, k = rope(q, k at position pos);  cache[layer][pos] = k, v
 *                 x += attention(q, cache[0 .. pos]) W_o
 *                 h = rms_norm(x) g_ffn;  x += (act(h W_gate) * h W_up) W_down        (SwiGLU)
 *     logits = rms_norm(x) g_final W_head
 *
 * llmkit.kernels.DecodePlan fills these structs from a Transformer and a ContiguousKVCache and checks the
 * model qualifies (pre-norm RMSNorm, RoPE, SwiGLU, no MoE, batch 1); tests/kernels/ hold the step to the model. */

typedef struct {
    int64_t fmt, n, k;     /* W [n, k] held as fmt */
    const void *w;
    const float *bias;     /* [n] or NULL */
} proj_t;

typedef struct {
    const float *attn_norm, *ffn_norm;  /* [d_model] */
    proj_t q, k, v, o, gate, up, down;
    float *k_cache, *v_cache;           /* this layer's [n_kv, max_len, d_head] */
} layer_t;

typedef struct {
    int64_t n_layers, d_model, n_heads, n_kv, d_head, d_rot, d_ff, max_len, window; /* window 0: none */
    float eps, scale, rope_scale;
    const float *inv_freq;              /* [d_rot / 2] */
    const layer_t *layers;
    const float *final_norm;
    proj_t embed, head;                 /* embed: the table [vocab, d_model] in its format */
} decoder_t;

/* ys[i] = x W_i^T (+ ys[i] if accumulate) (+ bias_i) for M rows, every W_i [n_i, k] in one pool run */
static int project_all(const proj_t *const *ps, float *const *ys, int count, const float *x, int64_t M, int accumulate) {
    product_t products[4];
    for (int i = 0; i < count; i++)
        products[i] = (product_t){.fmt = ps[i]->fmt, .N = ps[i]->n, .K = ps[i]->k, .W = ps[i]->w, .y = ys[i],
                                  .accumulate = accumulate};
    const int code = run_products(products, count, x, M);
    for (int i = 0; i < count && !code; i++)
        if (ps[i]->bias)
            for (int64_t r = 0; r < M; r++)
                for (int64_t j = 0; j < ps[i]->n; j++) ys[i][r * ps[i]->n + j] += ps[i]->bias[j];
    return code;
}

static int project(const proj_t *p, const float *x, float *y, int64_t M, int accumulate) {
    return project_all(&p, &y, 1, x, M, accumulate);
}

/* row r of a table [n, k] held as fmt, as float32 */
static void table_row(const proj_t *t, int64_t r, float *out) { row_f32(t->fmt, t->w, t->k, r, out); }

/* the half-split rotation of heads [n, d_head] at one position (cos, sin: [d_rot / 2]) */
static void rope_heads(float *x, int64_t n, int64_t d_head, int64_t d_rot, const float *c, const float *s) {
    const int64_t half = d_rot / 2;
    for (int64_t h = 0; h < n; h++) {
        float *v = x + h * d_head;
        for (int64_t i = 0; i < half; i++) {
            float a0 = v[i], a1 = v[i + half];
            v[i] = a0 * c[i] - a1 * s[i];
            v[i + half] = a1 * c[i] + a0 * s[i];
        }
    }
}

/* g = silu(g) * u = g / (1 + e^-g) * u */
static void silu_mul(float *g, const float *u, int64_t n) {
    int64_t i = 0;
#ifdef LLMKIT_AVX2
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
#endif
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void silu_mul_inplace(float *g, const float *u, int64_t n); /* below: among the threads when long */

/* The step's body for M new rows. One sequence (batched = 0): token r at cache slot slot + r, seeing the cache
 * and the tokens before it. A batch (batched = 1): row r is sequence r's one new token at slot ``slot`` of its
 * cache row, seeing that row's slots 0 .. slot except where pad [M, slot + 1] is 0 (left padding). Each row's
 * RoPE position is positions[r] (a padded row counts its real tokens only, as HF generate does). Logits
 * [M - first, vocab] of the rows from ``first`` on. */
static int decode_rows(const decoder_t *m, const int64_t *tokens, int64_t M, int batched, int64_t slot,
                       const int64_t *positions, const uint8_t *pad, int64_t first, float *logits) {
    const int64_t d = m->d_model, hd = m->d_head, nq = m->n_heads * hd, nkv = m->n_kv * hd, half = m->d_rot / 2;
    const int64_t row_stride = m->n_kv * m->max_len * hd; /* one sequence's K (or V) of one layer */
    if (M < 1 || slot + (batched ? 1 : M) > m->max_len) return -4;
    for (int64_t r = 0; r < M; r++)
        if (tokens[r] < 0 || tokens[r] >= m->embed.n || positions[r] < 0) return -4;
    float *buf = malloc(M * (3 * d + 2 * nq + 2 * nkv + 2 * m->d_ff + m->d_rot) * sizeof(float));
    if (!buf) return -2;
    float *x = buf, *h = x + M * d, *q = h + M * d, *k = q + M * nq, *v = k + M * nkv, *att = v + M * nkv,
          *g = att + M * nq, *u = g + M * m->d_ff, *c = u + M * m->d_ff, *s = c + M * half;
    for (int64_t r = 0; r < M; r++) {
        for (int64_t i = 0; i < half; i++) { /* as rope_cos_sin: angle in float32, then cos, sin, scaled */
            const float angle = (float)positions[r] * m->inv_freq[i];
            c[r * half + i] = cosf(angle) * m->rope_scale;
            s[r * half + i] = sinf(angle) * m->rope_scale;
        }
        table_row(&m->embed, tokens[r], x + r * d);
    }
    const int enabled = pool_enabled;
    pool_enabled = 1; /* nothing of PyTorch's runs in between: all threads */
    int code = 0;
    for (int64_t l = 0; l < m->n_layers && !code; l++) {
        const layer_t *L = m->layers + l;
        rms_norm(x, L->attn_norm, h, M, d, m->eps);
        code |= project_all((const proj_t *[]){&L->q, &L->k, &L->v}, (float *[]){q, k, v}, 3, h, M, 0);
        for (int64_t r = 0; r < M; r++) {
            const int64_t at = batched ? slot : slot + r, off = batched ? r * row_stride : 0;
            rope_heads(q + r * nq, m->n_heads, hd, m->d_rot, c + r * half, s + r * half);
            rope_heads(k + r * nkv, m->n_kv, hd, m->d_rot, c + r * half, s + r * half);
            for (int64_t j = 0; j < m->n_kv; j++) {
                memcpy(L->k_cache + off + (j * m->max_len + at) * hd, k + r * nkv + j * hd, hd * sizeof(float));
                memcpy(L->v_cache + off + (j * m->max_len + at) * hd, v + r * nkv + j * hd, hd * sizeof(float));
            }
        }
        /* The last layer's rows before ``first`` only leave their K and V in the cache: nothing after reads the
         * rest of them (rows below lo skip attention, o and the FFN). */
        const int64_t lo = l == m->n_layers - 1 ? first : 0, rows = M - lo, at = slot + lo;
        if (!batched && rows == 1) { /* one row: the threads share its heads */
            const int64_t start = m->window > 0 && at + 1 > m->window ? at + 1 - m->window : 0;
            attend_one(q + lo * nq, L->k_cache, L->v_cache, att + lo * nq, NULL, 1, m->n_heads, m->n_kv, at + 1, hd,
                       start, nq, hd, row_stride, m->max_len * hd, m->scale);
        } else if (!batched) { /* rows: the threads share them */
            causal_args a = {q + lo * nq, L->k_cache, L->v_cache, att + lo * nq, rows, m->n_heads, m->n_kv, hd, at,
                             m->window, m->max_len * hd, m->scale, NULL, 0, NULL};
            code |= attend_causal(&a);
        } else { /* every row at once: the threads share the rows' heads */
            const int64_t start = m->window > 0 && slot + 1 > m->window ? slot + 1 - m->window : 0;
            attend_one(q, L->k_cache, L->v_cache, att, pad, M, m->n_heads, m->n_kv, slot + 1, hd, start, nq, hd,
                       row_stride, m->max_len * hd, m->scale);
        }
        float *xr = x + lo * d, *hr = h + lo * d;
        code |= project(&L->o, att + lo * nq, xr, rows, 1);
        rms_norm(xr, L->ffn_norm, hr, rows, d, m->eps);
        code |= project_all((const proj_t *[]){&L->gate, &L->up}, (float *[]){g, u}, 2, hr, rows, 0);
        silu_mul_inplace(g, u, rows * m->d_ff);
        code |= project(&L->down, g, xr, rows, 1);
    }
    if (!code) {
        rms_norm(x + first * d, m->final_norm, h, M - first, d, m->eps);
        code = project(&m->head, h, logits, M - first, 0);
    }
    pool_enabled = enabled;
    free(buf);
    return code;
}

/* Decode the M tokens ``tokens`` of one sequence at positions pos .. pos + M - 1 (pos = tokens already cached),
 * each seeing the cache and the ones before it: logits [M, vocab] (all_logits) or [1, vocab] of the last. */
int decode_tokens(const decoder_t *m, const int64_t *tokens, int64_t M, int64_t pos, int all_logits, float *logits) {
    if (M < 1) return -4;
    int64_t *positions = malloc(M * sizeof(int64_t));
    if (!positions) return -2;
    for (int64_t r = 0; r < M; r++) positions[r] = pos + r;
    const int code = decode_rows(m, tokens, M, 0, pos, positions, NULL, all_logits ? 0 : M - 1, logits);
    free(positions);
    return code;
}

/* One new token for each of B sequences (cache rows 0 .. B - 1), all at cache slot ``slot``; pad [B, slot + 1]
 * (1 = a real token, 0 = padding; NULL: none), positions [B] their RoPE positions: logits [B, vocab]. */
int decode_batch(const decoder_t *m, const int64_t *tokens, int64_t B, int64_t slot, const int64_t *positions,
                 const uint8_t *pad, float *logits) {
    return decode_rows(m, tokens, B, 1, slot, positions, pad, 0, logits);
}


/* ---- dequantization: rows of a table held as fmt -> float32 ------------------------------------------------
 * out[i] = row ids[i] (or row i when ids is NULL) of W [n, k], for i < count; rows split among the threads. */

typedef struct {
    proj_t t;
    const int64_t *ids;
    int64_t count;
    float *out;
} dequantize_args;

static void task_dequantize(void *ctx, int ith, int nth) {
    const dequantize_args *a = ctx;
    int64_t lo, hi;
    split_rows(a->count, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) table_row(&a->t, a->ids ? a->ids[i] : i, a->out + i * a->t.k);
}

int dequantize_rows(int64_t fmt, const void *w, int64_t n, int64_t k, const int64_t *ids, int64_t count, float *out) {
    if (fmt < FMT_F32 || fmt > FMT_Q4_1 || (fmt >= FMT_Q8_0 && k % QK)) return -1;
    for (int64_t i = 0; ids && i < count; i++)
        if (ids[i] < 0 || ids[i] >= n) return -4;
    dequantize_args a = {{fmt, n, k, w, NULL}, ids, count, out};
    if (count * k < (1 << 16)) task_dequantize(&a, 0, 1);
    else pool_run(task_dequantize, &a);
    return 0;
}

/* ---- SwiGLU's gate: g = silu(g) * u over many elements, split among the threads ------------------------------ */

typedef struct {
    float *g;
    const float *u;
    int64_t n;
} silu_args;

static void task_silu(void *ctx, int ith, int nth) {
    const silu_args *a = ctx;
    const int64_t per = (a->n / nth + 7) / 8 * 8, lo = ith * per, hi = lo + per < a->n ? lo + per : a->n;
    if (lo < hi) silu_mul(a->g + lo, a->u + lo, hi - lo);
}

void silu_mul_inplace(float *g, const float *u, int64_t n) {
    silu_args a = {g, u, n};
    if (n < (1 << 15)) task_silu(&a, 0, 1);
    else pool_run(task_silu, &a);
}

/* ---- BPE merges (tokenize/bpe.py's bpe_merge, in C) -----------------------------------------------------------
 * A table (left id, right id) -> (rank, merged id), open addressing; bpe_merge_ids merges one piece's ids in
 * place, lowest rank first, leftmost on ties, exactly as bpe_merge does (O(n^2): for short pieces). */

typedef struct {
    int64_t key; /* (left << 32) | right; -1: empty */
    int32_t rank, merged;
} bpe_slot;

typedef struct {
    bpe_slot *slots;
    int64_t mask;
} bpe_table;

static inline uint64_t bpe_hash(int64_t key) { /* splitmix64's finaliser */
    uint64_t z = (uint64_t)key + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void *bpe_table_new(const int32_t *left, const int32_t *right, const int32_t *rank, const int32_t *merged, int64_t n) {
    int64_t size = 16;
    while (size < 2 * n) size <<= 1;
    bpe_table *t = malloc(sizeof *t);
    if (!t) return NULL;
    t->slots = malloc(size * sizeof(bpe_slot));
    if (!t->slots) { free(t); return NULL; }
    t->mask = size - 1;
    for (int64_t i = 0; i < size; i++) t->slots[i].key = -1;
    for (int64_t i = 0; i < n; i++) {
        const int64_t key = ((int64_t)left[i] << 32) | (uint32_t)right[i];
        int64_t s = bpe_hash(key) & t->mask;
        while (t->slots[s].key != -1 && t->slots[s].key != key) s = (s + 1) & t->mask;
        t->slots[s] = (bpe_slot){key, rank[i], merged[i]};
    }
    return t;
}

void bpe_table_free(void *t) {
    if (t) { free(((bpe_table *)t)->slots); free(t); }
}

static inline const bpe_slot *bpe_find(const bpe_table *t, int32_t a, int32_t b) {
    const int64_t key = ((int64_t)a << 32) | (uint32_t)b;
    for (int64_t s = bpe_hash(key) & t->mask;; s = (s + 1) & t->mask) {
        if (t->slots[s].key == key) return &t->slots[s];
        if (t->slots[s].key == -1) return NULL;
    }
}

#define BPE_NONE INT32_MAX

/* merge ids[0 .. n) in place; returns the new length */
int64_t bpe_merge_ids(const void *table, int32_t *ids, int64_t n) {
    const bpe_table *t = table;
    if (n < 2) return n;
    int32_t *ranks = malloc((n - 1) * sizeof(int32_t));
    if (!ranks) return -1;
    for (int64_t i = 0; i + 1 < n; i++) {
        const bpe_slot *s = bpe_find(t, ids[i], ids[i + 1]);
        ranks[i] = s ? s->rank : BPE_NONE;
    }
    while (n > 1) {
        int64_t best = 0;
        for (int64_t i = 1; i + 1 < n; i++)
            if (ranks[i] < ranks[best]) best = i; /* strict: the leftmost of equal ranks */
        if (ranks[best] == BPE_NONE) break;
        ids[best] = bpe_find(t, ids[best], ids[best + 1])->merged;
        memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof(int32_t));
        memmove(ranks + best, ranks + best + 1, (n - best - 2) * sizeof(int32_t));
        n--;
        if (best > 0) {
            const bpe_slot *s = bpe_find(t, ids[best - 1], ids[best]);
            ranks[best - 1] = s ? s->rank : BPE_NONE;
        }
        if (best + 1 < n) {
            const bpe_slot *s = bpe_find(t, ids[best], ids[best + 1]);
            ranks[best] = s ? s->rank : BPE_NONE;
        }
    }
    free(ranks);
    return n;
}
