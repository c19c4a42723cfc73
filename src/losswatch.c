/* losswatch: entries removed before their first delivery (see losswatch.h). */
#include "losswatch.h"

void losswatch_reset(losswatch *w, uint64_t delivered_sseq, uint64_t delivered_cseq)
{
        w->next_sseq = delivered_sseq ? delivered_sseq + 1 : 0;
        w->last_cseq = delivered_cseq;
        w->known = delivered_cseq > 0;
}

uint64_t losswatch_note(losswatch *w, uint64_t delivered, uint64_t sseq, uint64_t cseq)
{
        bool contiguous = w->known && cseq == w->last_cseq + 1;
        w->last_cseq = cseq;
        w->known = true;
        if (!contiguous) {
                /* Deliveries were missed (or this is the first one seen):
                 * a first delivery among them may be past next_sseq. */
                w->next_sseq = delivered == 1 ? sseq + 1 : 0;
                return 0;
        }
        if (delivered != 1)
                return 0;
        uint64_t skipped = w->next_sseq && sseq > w->next_sseq ? sseq - w->next_sseq : 0;
        w->next_sseq = sseq + 1;
        return skipped;
}
