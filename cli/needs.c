/* cli/needs.c: prints what a conversion plan will need (convert/estimate.c),
 * the line `convert --dry-run` ends with. */
#include <inttypes.h>
#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli/cli.h"
#include "convert/convert.h"

int qt_cli_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void qt_cli_print_needs(const qt_conv *cv)
{
    qt_conv_needs e;
    qt_conv_estimate(cv, qt_cli_threads(), &e);
    printf("needs: peak memory %" PRIu64 " bytes (%.1f MiB) with %d thread%s; output %" PRIu64
           " bytes (%.1f MiB)\n",
           e.peak_bytes, (double)e.peak_bytes / 1048576.0, e.threads, e.threads == 1 ? "" : "s",
           e.out_bytes, (double)e.out_bytes / 1048576.0);
}
