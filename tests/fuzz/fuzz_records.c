/* fuzz_records: the KV record decoders — ACL (PROTOCOL §4.3), membership
 * (§4.4), lease (§4.5) and the channel class (§4.6) — all on each input.
 * Accepted records are re-encoded by the matching encoder (what the daemon
 * writes back) and must decode to the same values; §4.2: what the daemon
 * writes is an object without nulls. */
#include "fuzz.h"

#include "contract_channel.h"
#include "contract_control.h"
#include "contract_record.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>

static bool streq(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* §4.2: a JSON object with no null anywhere at the top level. */
static void check_written(const char *s)
{
        json_t *v = json_loads(s, 0, NULL);
        FUZZ_CHECK(json_is_object(v));
        const char *k;
        json_t *f;
        json_object_foreach (v, k, f)
                FUZZ_CHECK(!json_is_null(f));
        json_decref(v);
}

static void check_acl(const char *data, size_t size)
{
        contract_acl a, b;
        rec_error err;
        if (contract_acl_decode(data, size, &a, &err) != REC_OK) {
                FUZZ_CHECK(a.allow == NULL && a.n_allow == 0);
                return;
        }
        for (size_t i = 0; i < a.n_allow; i++)
                FUZZ_CHECK(a.allow[i] != NULL);
        char *out = NULL;
        FUZZ_CHECK(contract_acl_encode(&a, &out) == 0);
        check_written(out);
        FUZZ_CHECK(contract_acl_decode(out, strlen(out), &b, &err) == REC_OK);
        FUZZ_CHECK(b.n_allow == a.n_allow && b.ignored == 0);
        for (size_t i = 0; i < a.n_allow; i++)
                FUZZ_CHECK(strcmp(a.allow[i], b.allow[i]) == 0);
        FUZZ_CHECK(a.has_revision == b.has_revision && (!a.has_revision || a.revision == b.revision));
        FUZZ_CHECK(a.has_updated_at == b.has_updated_at && (!a.has_updated_at || a.updated_at == b.updated_at));
        /* The coverage check never fails on what an ACL may hold. */
        (void)contract_channel_in_allow((const char *const *)a.allow, a.n_allow, "team.backend");
        char *text = contract_err_outside_acl("team.backend", &a);
        FUZZ_CHECK(text != NULL);
        free(text);
        free(out);
        contract_acl_fini(&b);
        contract_acl_fini(&a);
}

static void check_member(const char *data, size_t size)
{
        contract_member m, b;
        rec_error err;
        if (contract_member_decode(data, size, &m, &err) != REC_OK) {
                FUZZ_CHECK(m.owner == NULL && m.channel == NULL && m.state_raw == NULL && m.writer_identity == NULL);
                return;
        }
        FUZZ_CHECK(m.owner && strpbrk(m.owner, "\r\n") == NULL && m.generation >= 1);
        FUZZ_CHECK((m.state == MEMBER_STATE_OTHER) ==
                   !(streq(m.state_raw, "durable-active") || streq(m.state_raw, "live-confirmed")));
        /* durableEligible (§4.4) at the interval's edges. */
        FUZZ_CHECK(!contract_member_eligible(&m, m.join_cursor));
        if (!m.has_leave_cursor || m.leave_cursor > m.join_cursor)
                FUZZ_CHECK(contract_member_eligible(&m, m.join_cursor + 1));
        if (m.has_leave_cursor)
                FUZZ_CHECK(!contract_member_eligible(&m, m.leave_cursor + 1));
        char *out = NULL;
        int r = contract_member_encode(&m, &out);
        /* The daemon writes only the two states of §4.4. */
        if (m.state == MEMBER_STATE_OTHER) {
                FUZZ_CHECK(r == -EINVAL && out == NULL);
                contract_member_fini(&m);
                return;
        }
        FUZZ_CHECK(r == 0);
        check_written(out);
        FUZZ_CHECK(contract_member_decode(out, strlen(out), &b, &err) == REC_OK);
        FUZZ_CHECK(streq(b.channel, m.channel) && streq(b.owner, m.owner) && b.state == m.state &&
                   streq(b.state_raw, m.state_raw) && b.join_cursor == m.join_cursor &&
                   b.has_leave_cursor == m.has_leave_cursor && b.leave_cursor == m.leave_cursor &&
                   b.generation == m.generation && b.activated == m.activated &&
                   streq(b.writer_identity, m.writer_identity) && b.updated_at == m.updated_at);
        free(out);
        contract_member_fini(&b);
        contract_member_fini(&m);
}

static void check_lease(const char *data, size_t size)
{
        contract_lease l, b;
        rec_error err;
        if (contract_lease_decode(data, size, &l, &err) != REC_OK) {
                FUZZ_CHECK(l.holder == NULL);
                return;
        }
        FUZZ_CHECK(l.holder && l.since >= 0);
        char *out = NULL;
        FUZZ_CHECK(contract_lease_encode(l.holder, l.since, l.ready, &out) == 0);
        check_written(out);
        FUZZ_CHECK(contract_lease_decode(out, strlen(out), &b, &err) == REC_OK);
        FUZZ_CHECK(strcmp(b.holder, l.holder) == 0 && b.since == l.since && b.ready == l.ready);
        free(out);
        contract_lease_fini(&b);
        contract_lease_fini(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *s = (const char *)data;
        check_acl(s, size);
        check_member(s, size);
        check_lease(s, size);
        contract_class c = contract_class_of(s, size);
        FUZZ_CHECK(c == CLASS_UNSET || c == CLASS_DURABLE || c == CLASS_OTHER);
        FUZZ_CHECK(contract_class_of(NULL, 0) == CLASS_UNSET);
        /* §4.6: the effective class falls back to "durable". */
        FUZZ_CHECK(contract_class_is_durable(c, CLASS_UNSET) == (c != CLASS_OTHER));
        return 0;
}
