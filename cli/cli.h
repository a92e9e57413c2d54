/* The bitroll CLI verbs. Each takes (argc, argv) with argv[0] = the verb and returns the process exit code
 * (DESIGN 5: 0 ok, 1 verification mismatch, 2 bad input or usage, 3 runtime failure). */
#ifndef ROLLOUT_CLI_H
#define ROLLOUT_CLI_H

int cli_info_main(int argc, char **argv);
int cli_generate_main(int argc, char **argv);
int cli_score_main(int argc, char **argv);
int cli_verify_main(int argc, char **argv);
int cli_show_main(int argc, char **argv);
int cli_bench_main(int argc, char **argv);
int cli_worker_main(int argc, char **argv);

#endif
