/* generate's options, shared by `bitroll generate` and the persistent `bitroll worker` (which parses its start-up
 * options and then each request's with the same parser). */
#ifndef CLI_GENERATE_H
#define CLI_GENERATE_H

#include "api/driver.h"

/* Defaults of every generate option; verb names the command in messages ("generate", "worker"). */
void cli_generate_defaults(driver_opts *o, driver_generate_opts *g, const char *verb);
/* Parses argv (argv[0] = the verb) on top of o and g; *help = 1 for -h/--help. Pointers into argv are kept in g/o,
 * so argv must outlive them. BR_EINVAL naming the option on a bad one. */
br_status cli_generate_parse(int argc, char **argv, driver_opts *o, driver_generate_opts *g, int *help);
/* What a run needs: --prompts, --out, consistent stops, valid sampling. */
br_status cli_generate_check(const driver_opts *o, const driver_generate_opts *g);

#endif
