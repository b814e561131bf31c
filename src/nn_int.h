/* nn_int — private helpers shared by the nn_*.c ops (not part of the engine's API).
 *
 * NN_IVDEP marks an elementwise loop whose iterations are independent even when an output
 * aliases an input exactly (the in-place forms the headers allow), so GCC vectorises it at
 * -O2 without runtime alias checks. Other compilers ignore it.
 */
#ifndef EASEL_NN_INT_H
#define EASEL_NN_INT_H

#if defined(__GNUC__) && !defined(__clang__)
#define NN_IVDEP _Pragma("GCC ivdep")
#else
#define NN_IVDEP
#endif

#endif
