/* Unit tests for the ledger (E1 accounting): reservations against the
 * limit, commits and disposals in either order, read entries behind an
 * unread one still counting (INBOX evicts the oldest stored), the reader's
 * floor, seeds, per-owner isolation, and a seeded random model check that
 * the count never falls below an owner's real span. */
#include "ledger.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ledger_reader_state rs_at(uint64_t floor, uint64_t delivered, uint64_t pending, uint64_t ack_pending)
{
        ledger_reader_state rs = {
                .floor = floor, .delivered = delivered, .pending = pending, .ack_pending = ack_pending};
        return rs;
}

START_TEST(reservations_stop_at_the_limit_and_disposals_make_room)
{
        ledger *l = ledger_new(3);
        ck_assert_ptr_nonnull(l);
        for (int i = 0; i < 3; i++)
                ck_assert(ledger_reserve(l, "bob"));
        ck_assert(!ledger_reserve(l, "bob"));
        ck_assert_uint_eq(ledger_count(l, "bob"), 3);
        ledger_commit(l, "bob", 10);
        ledger_commit(l, "bob", 11);
        ledger_release(l, "bob"); /* the third was refused by the stream */
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        ck_assert(ledger_reserve(l, "bob"));
        ck_assert(!ledger_reserve(l, "bob"));
        ledger_dispose(l, "bob", 10);
        ck_assert(ledger_reserve(l, "bob"));
        /* A duplicate PubAck names an entry already counted. */
        ledger_commit(l, "bob", 11);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        ledger_commit(l, "bob", 12);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        /* A nak is no disposal; a second disposal of one entry is nothing. */
        ledger_dispose(l, "bob", 11);
        ledger_dispose(l, "bob", 11);
        ck_assert_uint_eq(ledger_count(l, "bob"), 1);
        ledger_free(l);
}
END_TEST

START_TEST(one_full_owner_leaves_the_others_alone)
{
        ledger *l = ledger_new(2);
        ck_assert(ledger_reserve(l, "stuck"));
        ck_assert(ledger_reserve(l, "stuck"));
        ck_assert(!ledger_reserve(l, "stuck"));
        for (int i = 0; i < 100; i++) {
                ck_assert(ledger_reserve(l, "carol"));
                ledger_commit(l, "carol", 100 + (uint64_t)i);
                ledger_dispose(l, "carol", 100 + (uint64_t)i);
        }
        ck_assert_uint_eq(ledger_count(l, "carol"), 0);
        ck_assert_uint_eq(ledger_count(l, "stuck"), 2);
        ledger_free(l);
}
END_TEST

START_TEST(a_disposal_before_the_commit_is_matched)
{
        ledger *l = ledger_new(10);
        ck_assert(ledger_reserve(l, "bob"));
        ck_assert(ledger_reserve(l, "bob"));
        /* The reader acked seq 5 before the writer read its PubAck. */
        ledger_dispose(l, "bob", 5);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        /* Read, but the other publish in flight may be older and unread:
         * 5 keeps its room until that one is answered. */
        ledger_commit(l, "bob", 5);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        ledger_commit(l, "bob", 6);
        ck_assert_uint_eq(ledger_count(l, "bob"), 1);
        /* Read early but behind an unread one: it takes room. */
        ck_assert(ledger_reserve(l, "bob"));
        ledger_dispose(l, "bob", 7);
        ledger_commit(l, "bob", 7);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        ledger_dispose(l, "bob", 6);
        ck_assert_uint_eq(ledger_count(l, "bob"), 0);
        ledger_free(l);
}
END_TEST

/* INBOX evicts the oldest stored entry of a subject, read or not: one
 * entry left unread (nak'ed, or waiting for its redelivery) holds room
 * for everything written after it, read or not. */
START_TEST(read_entries_behind_an_unread_one_count)
{
        ledger *l = ledger_new(4);
        for (uint64_t s = 1; s <= 4; s++) {
                ck_assert(ledger_reserve(l, "bob"));
                ledger_commit(l, "bob", s);
        }
        ck_assert(!ledger_reserve(l, "bob"));
        ledger_dispose(l, "bob", 2);
        ledger_dispose(l, "bob", 3);
        ledger_dispose(l, "bob", 4);
        ck_assert_uint_eq(ledger_count(l, "bob"), 4);
        ck_assert(!ledger_reserve(l, "bob"));
        ledger_dispose(l, "bob", 1);
        ck_assert_uint_eq(ledger_count(l, "bob"), 0);
        ck_assert(ledger_reserve(l, "bob"));
        ledger_free(l);
}
END_TEST

START_TEST(the_floor_prunes_and_stale_reports_are_ignored)
{
        ledger *l = ledger_new(10);
        for (uint64_t s = 1; s <= 5; s++) {
                ck_assert(ledger_reserve(l, "bob"));
                ledger_commit(l, "bob", s);
        }
        ck_assert_uint_eq(ledger_count(l, "bob"), 5);
        uint64_t e = ledger_epoch(l);
        ledger_reader_state rs = rs_at(3, 5, 0, 2);
        ledger_note_reader(l, e, &rs);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        /* A commit at or below the floor is already disposed of. */
        ck_assert(ledger_reserve(l, "bob"));
        ledger_commit(l, "bob", 2);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        /* A report from before a seed does not move anything. */
        ledger_reader_state seed_rs = rs_at(3, 5, 0, 2);
        ledger_seed(l, 5, &seed_rs, 0, NULL, NULL);
        ledger_reader_state late = rs_at(5, 5, 0, 0);
        ledger_note_reader(l, e, &late);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        ledger_note_reader(l, ledger_epoch(l), &late);
        ck_assert_uint_eq(ledger_count(l, "bob"), 0);
        ledger_free(l);
}
END_TEST

START_TEST(a_seed_counts_what_inbox_holds_until_the_floor_passes_it)
{
        ledger *l = ledger_new(500);
        const char *owners[] = {"bob", "carol", "dave"};
        uint64_t stored[] = {1000, 300, 0};
        /* INBOX ends at 5000 and the reader acked through 4000: any stored
         * entry may be an unread one older than the rest. */
        ledger_reader_state rs = rs_at(4000, 4900, 100, 500);
        ledger_seed(l, 5000, &rs, 3, owners, stored);
        ck_assert_uint_eq(ledger_count(l, "bob"), 1000);
        ck_assert_uint_eq(ledger_count(l, "carol"), 300);
        ck_assert_uint_eq(ledger_count(l, "dave"), 0);
        ck_assert(!ledger_reserve(l, "bob"));
        ck_assert(ledger_reserve(l, "carol"));
        ledger_commit(l, "carol", 5001);
        /* Disposals of seeded entries do not shorten the seed: one of
         * them may be the oldest and still unread. */
        for (uint64_t s = 4001; s < 4999; s++)
                ledger_dispose(l, "carol", s);
        ck_assert_uint_eq(ledger_count(l, "carol"), 301);
        rs = rs_at(4999, 5001, 0, 2);
        ledger_note_reader(l, ledger_epoch(l), &rs);
        ck_assert_uint_eq(ledger_count(l, "bob"), 1000);
        /* The floor passes the seed: only what we wrote counts. */
        rs = rs_at(5000, 5001, 0, 1);
        ledger_note_reader(l, ledger_epoch(l), &rs);
        ck_assert_uint_eq(ledger_count(l, "bob"), 0);
        ck_assert_uint_eq(ledger_count(l, "carol"), 1);
        ledger_free(l);
}
END_TEST

START_TEST(a_recreated_reader_makes_everything_unread_again)
{
        ledger *l = ledger_new(900);
        for (uint64_t s = 1; s <= 10; s++) {
                ck_assert(ledger_reserve(l, "bob"));
                ledger_commit(l, "bob", s);
                ledger_dispose(l, "bob", s);
        }
        ledger_reader_state rs = rs_at(10, 10, 0, 0);
        ledger_note_reader(l, ledger_epoch(l), &rs);
        ck_assert_uint_eq(ledger_count(l, "bob"), 0);
        /* The durable was deleted and re-created at deliver_policy all. */
        const char *owners[] = {"bob"};
        uint64_t stored[] = {10};
        rs = rs_at(0, 0, 10, 0);
        ledger_seed(l, 10, &rs, 1, owners, stored);
        ck_assert_uint_eq(ledger_count(l, "bob"), 10);
        ledger_free(l);
}
END_TEST

START_TEST(an_unanswered_publish_keeps_counting)
{
        ledger *l = ledger_new(2);
        ck_assert(ledger_reserve(l, "bob"));
        ledger_orphan(l, "bob"); /* no PubAck: maybe stored */
        ck_assert_uint_eq(ledger_count(l, "bob"), 1);
        ck_assert(ledger_reserve(l, "bob"));
        ck_assert(!ledger_reserve(l, "bob"));
        ledger_stats st;
        ledger_get_stats(l, &st);
        ck_assert_uint_eq(st.orphans, 1);
        ck_assert_uint_eq(st.in_flight, 1);
        ledger_free(l);
}
END_TEST

START_TEST(acks_lost_with_a_connection_count_again)
{
        ledger *l = ledger_new(10);
        for (uint64_t s = 1; s <= 3; s++) {
                ck_assert(ledger_reserve(l, "bob"));
                ledger_commit(l, "bob", s);
                ledger_dispose(l, "bob", s);
        }
        ck_assert_uint_eq(ledger_count(l, "bob"), 0);
        /* The reader reconnected: its last acks may be gone. */
        ck_assert_uint_eq(ledger_replay(l, 0), 3);
        ck_assert_uint_eq(ledger_count(l, "bob"), 3);
        /* Redelivered and read again, or covered by the floor. */
        ledger_dispose(l, "bob", 1);
        ck_assert_uint_eq(ledger_count(l, "bob"), 2);
        ledger_reader_state rs = rs_at(3, 3, 0, 0);
        ledger_note_reader(l, ledger_epoch(l), &rs);
        ck_assert_uint_eq(ledger_count(l, "bob"), 0);
        /* Replayed once only. */
        ck_assert_uint_eq(ledger_replay(l, 0), 0);
        ledger_free(l);
}
END_TEST

START_TEST(waiters_wake_on_a_disposal)
{
        ledger *l = ledger_new(1);
        uint64_t seen = ledger_changes(l);
        ck_assert(!ledger_wait(l, &seen, 20));
        ck_assert(ledger_reserve(l, "bob"));
        ledger_commit(l, "bob", 1);
        ck_assert(ledger_wait(l, &seen, 20));
        ck_assert(!ledger_wait(l, &seen, 20));
        ledger_dispose(l, "bob", 1);
        ck_assert(ledger_wait(l, &seen, 20));
        ledger_stats st;
        ledger_get_stats(l, &st);
        ck_assert_uint_eq(st.unread, 0);
        ck_assert_uint_eq(st.in_flight, 0);
        ledger_free(l);
}
END_TEST

/* ---- random model ------------------------------------------------------
 * A broker's INBOX in miniature: writers reserve and publish, the stream
 * stores (or, sometimes, stores while the PubAck is lost), PubAcks are
 * read late and in any order, the reader disposes in any order (sometimes
 * twice), the reader's link drops and takes some recent acks with it,
 * reader reports arrive, and now and then the ledger is re-seeded from the
 * "broker". After every step the ledger's
 * count of each owner must be at least the truth: publishes not yet
 * answered plus its stored entries from the oldest unread one on. */

#define M_OWNERS 4
#define M_MAX 20000

typedef struct m_entry {
        int owner;
        uint64_t seq;
        int state; /* 0 in flight, 1 stored unread, 2 disposed */
        bool committed;
        bool answered; /* the writer has read the outcome */
        bool orphan;   /* stored but the writer took it as failed */
} m_entry;

static const char *m_name[M_OWNERS] = {"o0", "o1", "o2", "o3"};

static uint64_t m_rand(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

START_TEST(random_schedules_never_undercount)
{
        for (uint64_t seed = 1; seed <= 40; seed++) {
                uint64_t x = seed * 0x9E3779B97F4A7C15ULL;
                ledger *l = ledger_new(30);
                static m_entry e[M_MAX];
                static size_t recent[M_MAX]; /* disposals since the last link drop */
                size_t n = 0, n_recent = 0;
                uint64_t last_seq = 0, floor = 0;
                int orphans[M_OWNERS] = {0};
                for (int step = 0; step < 6000 && n < M_MAX; step++) {
                        int op = (int)(m_rand(&x) % 100);
                        if (op < 35) { /* a writer publishes */
                                int o = (int)(m_rand(&x) % M_OWNERS);
                                if (ledger_reserve(l, m_name[o]))
                                        e[n++] = (m_entry){.owner = o};
                        } else if (op < 55) { /* the stream stores one in flight */
                                for (size_t i = 0; i < n; i++)
                                        if (e[i].state == 0 && !e[i].answered) {
                                                e[i].state = 1;
                                                e[i].seq = ++last_seq;
                                                break;
                                        }
                        } else if (op < 70) { /* the writer reads an outcome */
                                size_t i = n ? (size_t)(m_rand(&x) % n) : 0;
                                if (n && !e[i].answered) {
                                        e[i].answered = true;
                                        if (e[i].state == 0) {
                                                ledger_release(l, m_name[e[i].owner]);
                                        } else if (m_rand(&x) % 50 == 0) {
                                                /* PubAck lost: taken as failed although stored. */
                                                e[i].orphan = true;
                                                orphans[e[i].owner]++;
                                                ledger_release(l, m_name[e[i].owner]);
                                        } else {
                                                e[i].committed = true;
                                                ledger_commit(l, m_name[e[i].owner], e[i].seq);
                                        }
                                }
                        } else if (op < 90) { /* the reader disposes */
                                size_t i = n ? (size_t)(m_rand(&x) % n) : 0;
                                if (n && e[i].state >= 1) {
                                        if (e[i].state == 1 && n_recent < M_MAX)
                                                recent[n_recent++] = i;
                                        e[i].state = 2;
                                        ledger_dispose(l, m_name[e[i].owner], e[i].seq);
                                }
                        } else if (op < 92) { /* the reader's link dropped: some recent acks lost */
                                for (size_t r = 0; r < n_recent; r++)
                                        if (e[recent[r]].state == 2 && e[recent[r]].seq > floor && m_rand(&x) % 2)
                                                e[recent[r]].state = 1;
                                n_recent = 0;
                                (void)ledger_replay(l, 0);
                        } else if (op < 97) { /* a reader report */
                                uint64_t epoch = ledger_epoch(l);
                                uint64_t f = floor;
                                for (;;) { /* the highest seq with all below disposed */
                                        bool all = true;
                                        for (size_t i = 0; i < n; i++)
                                                if (e[i].state == 1 && e[i].seq == f + 1)
                                                        all = false;
                                        if (!all || f + 1 > last_seq)
                                                break;
                                        f++;
                                }
                                floor = f;
                                uint64_t unread = 0;
                                for (size_t i = 0; i < n; i++)
                                        unread += e[i].state == 1;
                                ledger_reader_state rs = rs_at(floor, last_seq, 0, unread);
                                ledger_note_reader(l, epoch, &rs);
                        } else { /* a re-seed from the "broker" */
                                uint64_t stored[M_OWNERS] = {0}, unread = 0;
                                for (size_t i = 0; i < n; i++) {
                                        if (e[i].state >= 1)
                                                stored[e[i].owner]++;
                                        unread += e[i].state == 1;
                                }
                                ledger_reader_state rs = rs_at(floor, last_seq, 0, unread);
                                ledger_seed(l, last_seq, &rs, M_OWNERS, m_name, stored);
                                for (int o = 0; o < M_OWNERS; o++)
                                        orphans[o] = 0; /* the seed counted them */
                        }
                        for (int o = 0; o < M_OWNERS; o++) {
                                /* In flight, plus every stored entry from
                                 * the oldest unread one on (read or not):
                                 * what INBOX would evict first. Orphans are
                                 * the documented margin (see ledger.h). */
                                uint64_t anchor = UINT64_MAX;
                                for (size_t i = 0; i < n; i++)
                                        if (e[i].owner == o && e[i].state == 1 && !e[i].orphan && e[i].seq < anchor)
                                                anchor = e[i].seq;
                                size_t truth = 0;
                                for (size_t i = 0; i < n; i++)
                                        if (e[i].owner == o && !e[i].orphan &&
                                            ((e[i].state == 0 && !e[i].answered) ||
                                             (e[i].state >= 1 && e[i].seq >= anchor)))
                                                truth++;
                                size_t c = ledger_count(l, m_name[o]);
                                ck_assert_msg(c >= truth, "seed %llu step %d owner %d: counted %zu, truth %zu",
                                              (unsigned long long)seed, step, o, c, truth);
                        }
                }
                /* Drain: everything stored gets disposed of, answers read,
                 * the floor reported: nothing is left counted. */
                for (size_t i = 0; i < n; i++) {
                        if (!e[i].answered) {
                                e[i].answered = true;
                                if (e[i].state == 0)
                                        ledger_release(l, m_name[e[i].owner]);
                                else
                                        ledger_commit(l, m_name[e[i].owner], e[i].seq);
                        }
                        if (e[i].state == 1)
                                ledger_dispose(l, m_name[e[i].owner], e[i].seq);
                }
                ledger_reader_state rs = rs_at(last_seq, last_seq, 0, 0);
                ledger_note_reader(l, ledger_epoch(l), &rs);
                for (int o = 0; o < M_OWNERS; o++)
                        ck_assert_uint_eq(ledger_count(l, m_name[o]), 0);
                ledger_free(l);
        }
}
END_TEST

int main(void)
{
        Suite *s = suite_create("ledger");
        TCase *tc = tcase_create("ledger");
        tcase_add_test(tc, reservations_stop_at_the_limit_and_disposals_make_room);
        tcase_add_test(tc, one_full_owner_leaves_the_others_alone);
        tcase_add_test(tc, a_disposal_before_the_commit_is_matched);
        tcase_add_test(tc, read_entries_behind_an_unread_one_count);
        tcase_add_test(tc, the_floor_prunes_and_stale_reports_are_ignored);
        tcase_add_test(tc, a_seed_counts_what_inbox_holds_until_the_floor_passes_it);
        tcase_add_test(tc, a_recreated_reader_makes_everything_unread_again);
        tcase_add_test(tc, an_unanswered_publish_keeps_counting);
        tcase_add_test(tc, acks_lost_with_a_connection_count_again);
        tcase_add_test(tc, waiters_wake_on_a_disposal);
        tcase_add_test(tc, random_schedules_never_undercount);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
