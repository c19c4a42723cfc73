/* test_config: the settings table (src/config.h) and what is made from it:
 * flags spelled out in full, empty values as defaults, every file error
 * reported with its line, --check-config, and the documents that must
 * name every setting (the example configuration and the man page, read
 * from the source tree: COTAL_SOURCE_ROOT). */
#include "config.h"
#include "log.h"

#include "unit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static config_result load(config *c, char *err, size_t size, const char *const *args)
{
        char *argv[32];
        int argc = 0;
        argv[argc++] = "cotal-deliveryd";
        for (; args[argc - 1] && argc < 31; argc++)
                argv[argc] = (char *)args[argc - 1];
        argv[argc] = NULL;
        return config_load(c, argc, argv, err, size);
}

static char *slurp(const char *rel)
{
        const char *root = getenv("COTAL_SOURCE_ROOT");
        ck_assert_msg(root, "COTAL_SOURCE_ROOT is not set");
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", root, rel);
        FILE *f = fopen(path, "r");
        ck_assert_msg(f, "cannot read %s", path);
        char *buf = calloc(1, 1 << 20);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

START_TEST(every_row_has_a_valid_default_and_help)
{
        config c;
        char err[1024];
        ck_assert_int_eq(load(&c, err, sizeof err, (const char *const[]){"--space", "s", "--no-auth", NULL}),
                         CONFIG_OK);
        for (size_t i = 0; i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
                ck_assert_msg(k->help && *k->help, "%s has no help", k->name);
                if (k->type == CONFIG_INT || k->type == CONFIG_MS) {
                        ck_assert_msg(k->def, "%s has no default", k->name);
                        long long v = config_number(&c, k);
                        ck_assert_msg(v >= k->min && v <= k->max && v == atoll(k->def), "%s default %lld", k->name, v);
                }
                if (k->type == CONFIG_STRING && k->def) {
                        ck_assert_str_eq(config_string(&c, k), k->def);
                }
        }
        ck_assert_int_eq(c.log_level, LOG_INFO);
        config_fini(&c);
}
END_TEST

START_TEST(long_options_must_be_spelled_out)
{
        config c;
        char err[1024];
        ck_assert_int_eq(load(&c, err, sizeof err, (const char *const[]){"--spac", "x", "--no-auth", NULL}),
                         CONFIG_USAGE);
        ck_assert_str_eq(err, "unknown option --spac");
        config_fini(&c);
        ck_assert_int_eq(load(&c, err, sizeof err, (const char *const[]){"--space=x", "--no-au", NULL}), CONFIG_USAGE);
        ck_assert_str_eq(err, "unknown option --no-au");
        config_fini(&c);
        /* A value that looks like an option is still a value. */
        ck_assert_int_eq(load(&c, err, sizeof err, (const char *const[]){"--space", "--x", "--no-auth", NULL}),
                         CONFIG_OK);
        ck_assert_str_eq(c.space, "--x");
        config_fini(&c);
}
END_TEST

START_TEST(an_empty_value_means_the_default)
{
        config c;
        char err[1024];
        ck_assert_int_eq(load(&c, err, sizeof err,
                              (const char *const[]){"--space", "s", "--no-auth", "--shards=", "--shard=",
                                                    "--fanout-batch=", "--log-level=", "--server=", NULL}),
                         CONFIG_OK);
        ck_assert_int_eq(c.fanout_batch, 256);
        ck_assert_int_eq(c.log_level, LOG_INFO);
        ck_assert_str_eq(c.server, "nats://127.0.0.1:4222");
        config_fini(&c);
        /* --shards=2 is still refused (§10.2 step 1). */
        ck_assert_int_eq(load(&c, err, sizeof err, (const char *const[]){"--space", "s", "--shards=2", NULL}),
                         CONFIG_USAGE);
        config_fini(&c);
}
END_TEST

START_TEST(every_file_error_is_reported_with_its_line)
{
        config c;
        memset(&c, 0, sizeof c);
        char err[1024];
        const char *text = "space = s\nfanout-batch = 0\nbogus = 1\n\nno equals sign\nreader-batch = 10\n"
                           "inbox-lead-limit =\n";
        FILE *f = fmemopen((void *)text, strlen(text), "r");
        ck_assert_int_eq(config_load_stream(&c, f, "t.conf", err, sizeof err), CONFIG_USAGE);
        fclose(f);
        ck_assert_str_eq(err, "t.conf:2: fanout-batch must be an integer in 1..1024, got \"0\"\n"
                              "t.conf:3: unknown key \"bogus\"\n"
                              "t.conf:5: expected \"key = value\"");
        ck_assert_int_eq(c.reader_batch, 10);      /* the good lines still apply */
        ck_assert_int_eq(c.inbox_lead_limit, 500); /* empty: the default */
        config_fini(&c);
}
END_TEST

START_TEST(check_config_exits_0_or_2)
{
        config c;
        char err[1024];
        ck_assert_int_eq(
                load(&c, err, sizeof err, (const char *const[]){"--space", "s", "--no-auth", "--check-config", NULL}),
                CONFIG_EXIT_OK);
        config_fini(&c);
        ck_assert_int_eq(load(&c, err, sizeof err, (const char *const[]){"--no-auth", "--check-config", NULL}),
                         CONFIG_USAGE);
        ck_assert_msg(strstr(err, "--space is required"), "%s", err);
        config_fini(&c);
        /* An unreadable file is a runtime failure at start, a failed check
         * under --check-config. */
        ck_assert_int_eq(load(&c, err, sizeof err,
                              (const char *const[]){"--space", "s", "--no-auth", "--config", "/nonexistent/x.conf",
                                                    "--check-config", NULL}),
                         CONFIG_USAGE);
        config_fini(&c);
}
END_TEST

START_TEST(same_format_and_copy_follow_the_rows)
{
        config a, b;
        char err[1024], buf[128];
        ck_assert_int_eq(load(&a, err, sizeof err, (const char *const[]){"--space", "s", "--no-auth", NULL}),
                         CONFIG_OK);
        ck_assert_int_eq(load(&b, err, sizeof err,
                              (const char *const[]){"--space", "s", "--no-auth", "--log-level", "debug",
                                                    "--inflight-mib", "32", "--standby", NULL}),
                         CONFIG_OK);
        size_t differ = 0;
        for (size_t i = 0; i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
                if (config_same(&a, &b, k))
                        continue;
                differ++;
                ck_assert_int_eq(config_copy(&a, &b, k), 0);
                ck_assert(config_same(&a, &b, k));
        }
        ck_assert_uint_eq(differ, 3);
        for (size_t i = 0; i < config_n_keys; i++) {
                if (strcmp(config_keys[i].name, "log-level") == 0) {
                        config_format(&a, &config_keys[i], buf, sizeof buf);
                        ck_assert_str_eq(buf, "debug");
                }
                if (strcmp(config_keys[i].name, "inflight-mib") == 0) {
                        config_format(&a, &config_keys[i], buf, sizeof buf);
                        ck_assert_str_eq(buf, "32");
                }
        }
        config_fini(&a);
        config_fini(&b);
}
END_TEST

/* The example configuration shows every setting ("#key =" or "key ="),
 * the man page names every flag, --help lists every flag. */
START_TEST(documents_name_every_setting)
{
        char *conf = slurp("conf/cotal-deliveryd.conf");
        char *man = slurp("man/cotal-deliveryd.8");
        char *help = NULL;
        size_t help_len = 0;
        FILE *h = open_memstream(&help, &help_len);
        config_help(h);
        fclose(h);
        for (size_t i = 0; i < config_n_keys; i++) {
                const char *name = config_keys[i].name;
                char want[128];
                snprintf(want, sizeof want, "\n#%s = ", name);
                char alt[128];
                snprintf(alt, sizeof alt, "\n%s = ", name);
                ck_assert_msg(strstr(conf, want) || strstr(conf, alt), "conf/cotal-deliveryd.conf lacks %s", name);
                char roff[128];
                size_t o = (size_t)snprintf(roff, sizeof roff, "\\-\\-");
                for (const char *p = name; *p && o + 3 < sizeof roff; p++) {
                        if (*p == '-')
                                roff[o++] = '\\';
                        roff[o++] = *p;
                }
                roff[o] = '\0';
                ck_assert_msg(strstr(man, roff), "man/cotal-deliveryd.8 lacks %s", roff);
                snprintf(want, sizeof want, "  --%s", name);
                ck_assert_msg(strstr(help, want), "--help lacks %s", name);
        }
        free(conf);
        free(man);
        free(help);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("table");
        tcase_add_test(tc, every_row_has_a_valid_default_and_help);
        tcase_add_test(tc, long_options_must_be_spelled_out);
        tcase_add_test(tc, an_empty_value_means_the_default);
        tcase_add_test(tc, every_file_error_is_reported_with_its_line);
        tcase_add_test(tc, check_config_exits_0_or_2);
        tcase_add_test(tc, same_format_and_copy_follow_the_rows);
        tcase_add_test(tc, documents_name_every_setting);
        suite_add_tcase(s, tc);
        return unit_run(s);
}
