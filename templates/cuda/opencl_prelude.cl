/* convgen: OpenCL C prelude that runs the CUDA text of a generated kernel, unchanged, on an
   OpenCL device (PoCL on a CPU, or Oclgrind for race and bounds checks).  It maps the CUDA
   built-ins the templates use, and only those, onto their OpenCL counterparts. */
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#pragma OPENCL FP_CONTRACT OFF
#define CONVGEN_GLOBAL __global
#define CONVGEN_INT64 long
#define __global__ __kernel
#define CONVGEN_BLOCK(threads) __attribute__((reqd_work_group_size(threads, 1, 1)))
#define __restrict__ restrict
#define __shared__ __local
#define __syncthreads() barrier(CLK_LOCAL_MEM_FENCE)
#define threadIdx ((uint3)((uint)get_local_id(0), (uint)get_local_id(1), (uint)get_local_id(2)))
#define blockIdx ((uint3)((uint)get_group_id(0), (uint)get_group_id(1), (uint)get_group_id(2)))
#define blockDim ((uint3)((uint)get_local_size(0), (uint)get_local_size(1), (uint)get_local_size(2)))
#define gridDim ((uint3)((uint)get_num_groups(0), (uint)get_num_groups(1), (uint)get_num_groups(2)))
#define sqrtf sqrt
#define powf pow
#define fabsf fabs
#define rintf rint
#define __fmul_rn(a, b) ((a) * (b)) /* CUDA's product that is never fused */
/* CUDA's __dp4a: the products of four signed bytes summed, plus c. */
int convgen_dp4a(int a, int b, int c)
{
    const char4 x = as_char4(a), y = as_char4(b);
    return c + x.s0 * y.s0 + x.s1 * y.s1 + x.s2 * y.s2 + x.s3 * y.s3;
}
#define CONVGEN_DP4A convgen_dp4a
#define __device__
#define __constant__ __constant
