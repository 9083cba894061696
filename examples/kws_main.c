/* Calling an mcu-profile kernel from C: the first layer of the bundled keyword-spotting
   network (convgen generate mcu --target c -o out).  The caller owns every buffer: the
   weights stay where they are (const: flash on a microcontroller), the kernel repacks them
   into the scratch buffer on each call.  Strict C99; prints the sum of the outputs. */
#include <stdio.h>

#include "kws_conv1.h"

static float x[KWS_CONV1_X_SAMPLE];             /* one sample: 1 x 49 x 10 features */
static float w[KWS_CONV1_W_SIZE];
static float b[KWS_CONV1_B_SIZE];
static float y[KWS_CONV1_Y_SAMPLE];             /* 16 x 25 x 5 */
static float scratch[KWS_CONV1_SCRATCH_SIZE];   /* the weights, repacked: 2,560 bytes */

int main(void)
{
    double sum = 0;
    for (long i = 0; i < KWS_CONV1_X_SAMPLE; ++i) x[i] = (float)(i % 7 - 3);
    for (long i = 0; i < KWS_CONV1_W_SIZE; ++i) w[i] = (float)(i % 5 - 2);
    for (long i = 0; i < KWS_CONV1_B_SIZE; ++i) b[i] = (float)i;
    kws_conv1(x, w, b, y, scratch, 1);          /* a batch of one */
    for (long i = 0; i < KWS_CONV1_Y_SAMPLE; ++i) sum += y[i];
    printf("%.1f\n", sum);
    return 0;
}
