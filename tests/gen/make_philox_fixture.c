/* make_philox_fixture — cuRAND's Philox4x32-10 from its host API (curandCreateGeneratorHost,
 * runs on the CPU), for tests/gen/test_torch_rng.c. Built and run by make_fixtures.py with
 * the CUDA toolkit (-lcurand); prints JSON: per seed the first N 32-bit words
 * (curandGenerate) and N normals (curandGenerateNormal, mean 0, std 1) of a fresh generator.
 * With the default ordering and N up to 65536, value i is word i % 4 of Philox block
 * (counter 0, subsequence i / 4): what curand_init(seed, i / 4, 0) + curand4 gives a thread. */
#include <curand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 512

static int gen(unsigned long long seed, unsigned *u, float *f) {
    curandGenerator_t g;
    if (curandCreateGeneratorHost(&g, CURAND_RNG_PSEUDO_PHILOX4_32_10) ||
        curandSetPseudoRandomGeneratorSeed(g, seed) || curandGenerate(g, u, N))
        return 1;
    curandDestroyGenerator(g);
    if (curandCreateGeneratorHost(&g, CURAND_RNG_PSEUDO_PHILOX4_32_10) ||
        curandSetPseudoRandomGeneratorSeed(g, seed) || curandGenerateNormal(g, f, N, 0.0f, 1.0f))
        return 1;
    curandDestroyGenerator(g);
    return 0;
}

int main(void) {
    static const unsigned long long seeds[] = {0, 1234, 0x100000007ull, 0xffffffffffffffffull};
    unsigned u[N];
    float f[N];
    printf("{\"n\":%d,\"cases\":[", N);
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        if (gen(seeds[s], u, f)) {
            fprintf(stderr, "curand host generator failed\n");
            return 1;
        }
        printf("%s{\"seed\":\"%llu\",\"words\":[", s ? "," : "", seeds[s]);
        for (int i = 0; i < N; i++)
            printf("%s%u", i ? "," : "", u[i]);
        printf("],\"normals\":[");
        for (int i = 0; i < N; i++)
            printf("%s%.9g", i ? "," : "", (double)f[i]);
        printf("]}");
    }
    printf("]}\n");
    return 0;
}
