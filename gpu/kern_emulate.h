/* kern_emulate — the host emulation harness: run a kernel body for every (block, thread) of
 * a 1-D grid, in order, on the CPU. Threads of one launch never depend on each other (see
 * kern_common.h), so sequential order gives the results a device gives, up to the order of
 * atomic float additions. */
#ifndef EASEL_KERN_EMULATE_H
#define EASEL_KERN_EMULATE_H

#include "kern_common.h"

#define KERN_EMULATE(n_work, block_dim, body, ...)                                   \
    do {                                                                             \
        int kern_nb_ = kern_blocks((n_work), (block_dim));                           \
        for (int kern_b_ = 0; kern_b_ < kern_nb_; kern_b_++)                         \
            for (int kern_t_ = 0; kern_t_ < (block_dim); kern_t_++) {                \
                KernIdx kern_ix_ = {kern_b_, (block_dim), kern_t_};                  \
                body(kern_ix_, __VA_ARGS__);                                         \
            }                                                                        \
    } while (0)

#endif
