/* ctlqueue: per-agent FIFOs served round-robin (see ctlqueue.h). */
#include "ctlqueue.h"

#include "strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct agent_fifo {
        char *agent;  /* owned */
        void **items; /* ring of per_agent */
        size_t head, n;
        struct agent_fifo *next_turn; /* in the turn list while n > 0 */
} agent_fifo;

struct ctlqueue {
        size_t per_agent;
        void (*free_item)(void *);
        strmap agents;            /* agent -> agent_fifo, while it has items */
        agent_fifo *first, *last; /* whose turn: first */
        size_t len;
};

ctlqueue *ctlqueue_new(size_t per_agent, void (*free_item)(void *))
{
        ctlqueue *q = calloc(1, sizeof *q);
        if (!q)
                return NULL;
        q->per_agent = per_agent ? per_agent : 1;
        q->free_item = free_item;
        strmap_init(&q->agents);
        return q;
}

static void fifo_free(agent_fifo *f)
{
        free(f->items);
        free(f->agent);
        free(f);
}

void ctlqueue_free(ctlqueue *q)
{
        if (!q)
                return;
        for (agent_fifo *f = q->first, *nx; f; f = nx) {
                nx = f->next_turn;
                for (size_t i = 0; i < f->n; i++)
                        if (q->free_item)
                                q->free_item(f->items[(f->head + i) % q->per_agent]);
                fifo_free(f);
        }
        strmap_fini(&q->agents);
        free(q);
}

int ctlqueue_push(ctlqueue *q, const char *agent, void *item)
{
        agent_fifo *f = strmap_get(&q->agents, agent);
        if (f && f->n >= q->per_agent)
                return -EBUSY;
        if (!f) {
                f = calloc(1, sizeof *f);
                if (!f)
                        return -ENOMEM;
                f->agent = strdup(agent);
                f->items = malloc(q->per_agent * sizeof *f->items);
                if (!f->agent || !f->items || strmap_put(&q->agents, agent, f) < 0) {
                        fifo_free(f);
                        return -ENOMEM;
                }
                if (q->last)
                        q->last->next_turn = f;
                else
                        q->first = f;
                q->last = f;
        }
        f->items[(f->head + f->n) % q->per_agent] = item;
        f->n++;
        q->len++;
        return 0;
}

void *ctlqueue_pop(ctlqueue *q)
{
        agent_fifo *f = q->first;
        if (!f)
                return NULL;
        void *item = f->items[f->head];
        f->head = (f->head + 1) % q->per_agent;
        f->n--;
        q->len--;
        q->first = f->next_turn;
        if (!q->first)
                q->last = NULL;
        f->next_turn = NULL;
        if (f->n > 0) {
                /* Its next request waits for everyone else's turn. */
                if (q->last)
                        q->last->next_turn = f;
                else
                        q->first = f;
                q->last = f;
        } else {
                strmap_remove(&q->agents, f->agent);
                fifo_free(f);
        }
        return item;
}

size_t ctlqueue_len(const ctlqueue *q)
{
        return q->len;
}

size_t ctlqueue_agents(const ctlqueue *q)
{
        return q->agents.count;
}
