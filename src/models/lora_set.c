/* lora_set — see lora_set.h. */
#include "lora_set.h"

#include <stdlib.h>
#include <string.h>

void lora_set_free(LoraSet *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].A);
        free(s->e[i].B);
        free(s->e[i].m);
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}
