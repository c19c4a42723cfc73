/* fuzz_config: the --config file parser (config_load_stream; the file is
 * the input, read through fmemopen). An accepted file leaves every value
 * in its key's range; a rejected one names "file:line:". */
#include "fuzz.h"

#include "config.h"
#include "contract_constants.h"

#include <stdbool.h>
#include <syslog.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* fmemopen cannot open an empty buffer everywhere; an empty file
         * is an empty stream. */
        FILE *f = size ? fmemopen((void *)data, size, "r") : fopen("/dev/null", "r");
        FUZZ_CHECK(f != NULL);
        config c;
        memset(&c, 0, sizeof c);
        c.log_level = LOG_INFO;
        c.broker_gone_ms = CONTRACT_BROKER_GONE_MS;
        c.fanout_batch = 256;
        c.reader_batch = 256;
        c.inbox_lead_limit = 500;
        c.shutdown_timeout_ms = 5000;
        char err[512] = "";
        config_result r = config_load_stream(&c, f, "fuzz.conf", err, sizeof err);
        fclose(f);
        if (r == CONFIG_OK) {
                FUZZ_CHECK(err[0] == '\0');
                FUZZ_CHECK(c.log_level >= LOG_ERR && c.log_level <= LOG_DEBUG);
                FUZZ_CHECK(c.broker_gone_ms >= 1 && c.broker_gone_ms <= 86400000);
                FUZZ_CHECK(c.fanout_batch >= 1 && c.fanout_batch <= 1024);
                FUZZ_CHECK(c.reader_batch >= 1 && c.reader_batch <= 1000);
                FUZZ_CHECK(c.inbox_lead_limit >= 10 && c.inbox_lead_limit <= 900);
                FUZZ_CHECK(c.shutdown_timeout_ms >= 100 && c.shutdown_timeout_ms <= 60000);
                /* String values are non-empty and trimmed. */
                const char *strings[] = {c.space, c.server, c.creds, c.diag_socket};
                for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
                        const char *s = strings[i];
                        if (!s)
                                continue;
                        size_t n = strlen(s);
                        FUZZ_CHECK(n > 0 && !strchr(" \t\r\n", s[0]) && !strchr(" \t\r\n", s[n - 1]));
                }
        } else {
                FUZZ_CHECK(r == CONFIG_USAGE);
                FUZZ_CHECK(strncmp(err, "fuzz.conf:", 10) == 0 && err[10] >= '1' && err[10] <= '9');
        }
        config_fini(&c);
        return 0;
}
