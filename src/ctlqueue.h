/* ctlqueue: control requests waiting, one FIFO per agent, served round-
 * robin (issue 14 item 2). One agent calling listMemberships 20 times a
 * second once pushed another agent's join from 62 ms to a timeout: in one
 * arrival-ordered queue every request waits for all that came before it.
 * Here each agent waiting gets one request served per round, so a flood
 * delays the others by at most one of its requests per round, and an
 * agent's own queue is bounded (the caller answers what does not fit).
 * Items are opaque; one owner thread. */
#pragma once

#include <stddef.h>

typedef struct ctlqueue ctlqueue;

/* per_agent: the most requests one agent may have waiting. free_item
 * destroys an item left at ctlqueue_free. NULL on allocation failure. */
ctlqueue *ctlqueue_new(size_t per_agent, void (*free_item)(void *));
void ctlqueue_free(ctlqueue *q); /* accepts NULL; frees what is left */

/* Queues item for agent: 0; -EBUSY when agent already has per_agent
 * waiting (item not taken); -ENOMEM (item not taken). */
int ctlqueue_push(ctlqueue *q, const char *agent, void *item);

/* The next item: the oldest of the agent whose turn it is; agents take
 * turns in the order they first had something waiting. NULL if none. */
void *ctlqueue_pop(ctlqueue *q);

size_t ctlqueue_len(const ctlqueue *q);    /* items waiting */
size_t ctlqueue_agents(const ctlqueue *q); /* agents with items waiting */
