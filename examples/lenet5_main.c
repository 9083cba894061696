/* Calls the bundled LeNet-5 network's C (convgen generate lenet5_network -o out):
   two samples through the whole network, its 10 scores each and the best class. */
#include <stdio.h>
#include "lenet5_network.h"

int main(void)
{
    static float x[2 * LENET5_NETWORK_X_SAMPLE];
    static float y[2 * LENET5_NETWORK_Y_SAMPLE];
    /* the network's workspace: a float array keeps it aligned; its size does not depend on
       the batch */
    static float scratch[LENET5_NETWORK_SCRATCH_BYTES / sizeof(float)];
    for (long i = 0; i < 2 * LENET5_NETWORK_X_SAMPLE; ++i) {
        x[i] = (float)(i % 17 - 8) / 8.0f;
    }
    lenet5_network(x, y, scratch, 2);
    for (long n = 0; n < 2; ++n) {
        long best = 0;
        printf("sample %ld:", n);
        for (long k = 0; k < LENET5_NETWORK_Y_SAMPLE; ++k) {
            printf(" %.4f", y[n * LENET5_NETWORK_Y_SAMPLE + k]);
            if (y[n * LENET5_NETWORK_Y_SAMPLE + k] > y[n * LENET5_NETWORK_Y_SAMPLE + best]) {
                best = k;
            }
        }
        printf("  -> class %ld\n", best);
    }
    return 0;
}
