/* `bitroll tokenize` / `bitroll detokenize`: text on stdin -> ids on stdout, and back; --jsonl per JSON record. */
#ifndef CLI_TOKENIZE_H
#define CLI_TOKENIZE_H

/* argv[0] is the verb ("tokenize" / "detokenize"). Return the process exit code:
 * 0 ok, 2 bad input or usage, 3 runtime failure. */
int cli_tokenize_main(int argc, char **argv);
int cli_detokenize_main(int argc, char **argv);

#endif
