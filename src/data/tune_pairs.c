/* tune_pairs — see tune_pairs.h. */
#include "tune_pairs.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

void tune_pairs_push(TunePairs *ps, const TunePair *p) {
    ps->v = xrealloc(ps->v, (ps->n + 1) * sizeof *ps->v);
    TunePair *d = &ps->v[ps->n++];
    *d = *p;
    d->prompt = p->prompt ? xstrdup(p->prompt) : NULL;
    d->prompt_neg = p->prompt_neg ? xstrdup(p->prompt_neg) : NULL;
    d->path_w = p->path_w ? xstrdup(p->path_w) : NULL;
    d->path_l = p->path_l ? xstrdup(p->path_l) : NULL;
}

void tune_pairs_free(TunePairs *ps) {
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++) {
        free(ps->v[i].prompt);
        free(ps->v[i].prompt_neg);
        free(ps->v[i].path_w);
        free(ps->v[i].path_l);
    }
    free(ps->v);
    memset(ps, 0, sizeof *ps);
}
