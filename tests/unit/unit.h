/* unit: what every unit test's main ends with. */
#pragma once

#include <check.h>
#include <stdlib.h>

/* Runs the suite (check's forking mode: a crash fails one case, not the
 * program) and returns the process exit status. */
static inline int unit_run(Suite *s)
{
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
