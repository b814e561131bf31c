/* kern_emulate — the host emulation harness: run a kernel of gpu/kern_list.h on the CPU with the
 * semantics a CUDA device gives it, so tests check the exact source the GPU runs.
 *
 * What it models: a grid of 1-, 2- or 3-D blocks of 1-, 2- or 3-D threads; a block's threads
 * as real POSIX threads that run concurrently; kern_sync as a barrier of the whole block;
 * dynamic shared memory per block (filled with NaN bytes before each block, so a read of
 * shared memory nobody wrote shows up as NaN); warp shuffles (xor, down, indexed) and votes
 * over 32-lane groups of the linear thread index, as two-step exchanges that every lane must
 * join; atomicAdd on float and int as real atomics. Launch limits as a device: at most 1024
 * threads, 48 KiB of shared memory, grid y/z <= 65535. Misuse that hangs or is undefined on a
 * device (a barrier not every thread reaches, a warp operation some lane skips, a shuffle from
 * a lane the block does not have, a deadlock) fails the launch with a message (ERR_GPU).
 *
 * What it does not model: blocks run one after another (in a fixed shuffled order), never at
 * the same time, so races between blocks on global memory are not seen (only order
 * dependence); memory ordering weaker than a mutex (every barrier here is a full fence, and
 * x86 is strongly ordered, so a missing __threadfence or volatile is not caught); warps run
 * freely between warp operations (as Volta's independent scheduling), but a race inside a
 * block shows only if the OS happens to interleave the threads that way; the device's fused
 * multiply-add and its expf (a few ulp apart), so comparisons need a tolerance; timing,
 * occupancy, bank conflicts, register pressure. Small shapes only: every launch starts one
 * POSIX thread per thread of a block.
 */
#ifndef EASEL_KERN_EMULATE_H
#define EASEL_KERN_EMULATE_H

#include "err.h"
#include "kern_common.h"
#include "kern_list.h"

typedef void (*KernHostBody)(KernCtx *k, const void *args);

/* Run body over launch l with args. 0, or ERR_GPU (bad launch, misuse; message in err) or
 * ERR_NOMEM. An empty grid (grid.x == 0) runs nothing, as the CUDA launchers skip it. */
int kern_emulate(const char *name, KernLaunch l, KernHostBody body, const void *args, Err *err);

/* Successful launches of the kernel called name in this process so far. */
long kern_emulate_launches(const char *name);

/* For every kernel NAME of gpu/kern_list.h, with its argument struct ARGS:
 *   int NAME_emulate(KernLaunch l, const ARGS *a, Err *err)   any geometry
 *   int NAME_run(const ARGS *a, Err *err)                     the CUDA launcher's geometry */
#define KERN_EMULATE_DEFINE_(name, Args)                                                     \
    static inline void name##_host(KernCtx *k, const void *a) { name(k, (const Args *)a); }  \
    static inline int name##_emulate(KernLaunch l, const Args *a, Err *err) {                 \
        return kern_emulate(#name, l, name##_host, a, err);                                   \
    }                                                                                         \
    static inline int name##_run(const Args *a, Err *err) {                                   \
        return name##_emulate(name##_launch(a), a, err);                                      \
    }
KERN_LIST(KERN_EMULATE_DEFINE_)

#endif
