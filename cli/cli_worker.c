/* `bitroll worker`: a persistent generate job under mpirun for an RL loop. The ranks load the model once; then rank 0
 * reads one JSON request per line on stdin (new weights to take, then generate's options for one round), every rank
 * takes the new weights through a comm/ broadcast and checks their fingerprint, the round runs as `bitroll generate`
 * would, and rank 0 answers with one JSON line on stdout. EOF on stdin ends the job. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "cli/cli_generate.h"
#include "cli/cli_util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpirun -np N bitroll worker [generate options]   (stdin: JSON requests; stdout: JSON answers)\n"
            "\n"
            "A persistent `bitroll generate` for RL loops: the ranks load the model once and then serve rounds. Rank 0\n"
            "reads one JSON object per line on stdin:\n"
            "  {\"id\": 7, \"weights\": \"step7.safetensors\", \"fingerprint\": \"HEX\",\n"
            "   \"args\": [\"--prompts\", \"p.jsonl\", \"--out\", \"r7.h5\", \"--seed\", \"7\", \"--weight-version\", \"7\"]}\n"
            "  weights      optional: a .safetensors file of Hugging Face names (F32/BF16; all or some of the model's\n"
            "               tensors). Rank 0 reads it, every rank receives its bytes over MPI and replaces those\n"
            "               tensors; every rank's fingerprint must equal rank 0's. The update applies to the current\n"
            "               weights and stays for later requests.\n"
            "  fingerprint  optional: the fingerprint the weights must have after the update (the trainer's)\n"
            "  args         generate's options for this round, on top of the start-up ones (--prompts and --out\n"
            "               required; --model, --random-weights, --weights-seed, --tokenizer, --device, --kernels,\n"
            "               --tp, --print-config and --comm-timeout are fixed at start-up)\n"
            "For each request rank 0 writes one JSON line on stdout: {\"id\": 7, \"ok\": true, \"out\": ...,\n"
            "\"fingerprint\": ..., \"weight_version\": ..., \"samples\": ..., \"tokens\": ..., \"seconds\": {\"weights\": ...,\n"
            "\"generate\": ...}} or {\"id\": 7, \"ok\": false, \"exit_code\": 2, \"error\": \"...\"}. A bad request (exit_code 2)\n"
            "is answered and the worker goes on; a runtime failure (3) is answered and ends the job. At start-up it\n"
            "writes {\"ready\": true, \"fingerprint\": ..., ...}. EOF on stdin ends the job (exit 0).\n"
            "\n"
            "Start-up options: those of `bitroll generate` (bitroll generate --help), without --prompts and --out;\n"
            "sampling options given here are defaults for every request.\n"
            "\n"
            "Exit: 0 after EOF, 2 bad start-up options or model, 3 runtime failure.\n");
}

/* Options a request may not change: they define the engine the job was started with. */
static const char *const FIXED[] = {"--model", "--random-weights", "--weights-seed", "--tokenizer", "--device",
                                    "--kernels", "--tp", "--print-config", "--comm-timeout"};

static br_status check_fixed(const char *arg) {
    if (strncmp(arg, "--", 2) != 0) return BR_OK;
    size_t n = strcspn(arg, "=");
    for (size_t i = 0; i < sizeof FIXED / sizeof FIXED[0]; i++)
        if (strlen(FIXED[i]) == n && !strncmp(arg, FIXED[i], n))
            return br_fail(BR_EINVAL, "request: %s is fixed when the worker starts", FIXED[i]);
    return BR_OK;
}

typedef struct {
    cJSON *root;
    const cJSON *id;
    const char *weights, *fingerprint;
    char **argv; /* ("worker", args...) pointing into root */
    int argc;
} request;

static void request_free(request *r) {
    cJSON_Delete(r->root);
    free(r->argv);
    memset(r, 0, sizeof *r);
}

static br_status request_parse(const char *line, size_t len, request *r) {
    memset(r, 0, sizeof *r);
    r->root = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(r->root)) return br_fail(BR_EINVAL, "request: not a JSON object: %.80s", line);
    r->id = cJSON_GetObjectItemCaseSensitive(r->root, "id");
    const cJSON *it = NULL;
    cJSON_ArrayForEach(it, r->root) {
        const char *k = it->string;
        if (!strcmp(k, "id")) continue;
        if (!strcmp(k, "weights") || !strcmp(k, "fingerprint")) {
            if (!cJSON_IsString(it) || !it->valuestring[0])
                return br_fail(BR_EINVAL, "request: field '%s' must be a non-empty string", k);
            if (!strcmp(k, "weights")) r->weights = it->valuestring;
            else r->fingerprint = it->valuestring;
        } else if (!strcmp(k, "args")) {
            if (!cJSON_IsArray(it)) return br_fail(BR_EINVAL, "request: field 'args' must be a list of strings");
            int n = cJSON_GetArraySize(it);
            r->argv = calloc((size_t)n + 2, sizeof *r->argv);
            if (!r->argv) return br_fail(BR_ENOMEM, "request: out of memory");
            r->argv[r->argc++] = (char *)"worker";
            const cJSON *a = NULL;
            cJSON_ArrayForEach(a, it) {
                if (!cJSON_IsString(a)) return br_fail(BR_EINVAL, "request: 'args' item %d is not a string", r->argc - 1);
                br_status rc = check_fixed(a->valuestring);
                if (rc != BR_OK) return rc;
                r->argv[r->argc++] = a->valuestring;
            }
        } else {
            return br_fail(BR_EINVAL, "request: unknown field '%s' (id, weights, fingerprint, args)", k);
        }
    }
    if (!r->argv) return br_fail(BR_EINVAL, "request: field 'args' is required (generate's options for the round)");
    return BR_OK;
}

/* One JSON line on stdout (rank 0 only). */
static void answer(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(s);
    cJSON_Delete(j);
}

static cJSON *answer_start(const request *r) {
    cJSON *j = cJSON_CreateObject();
    if (r->id) cJSON_AddItemToObject(j, "id", cJSON_Duplicate(r->id, 1));
    else cJSON_AddNullToObject(j, "id");
    return j;
}

/* Reads one line of stdin on rank 0 and hands it to every rank, NUL-terminated without its newline, *len counting
 * the NUL; *len = 0 at EOF. Blank lines are skipped. */
static br_status next_line(comm_world *world, char **line, size_t *len) {
    *line = NULL;
    *len = 0;
    if (world->rank == 0) {
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(line, &cap, stdin)) >= 0) {
            while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) n--;
            if (n > 0) break;
        }
        if (n < 0) {
            free(*line);
            *line = NULL;
        } else {
            (*line)[n] = '\0';
            *len = (size_t)n + 1;
        }
    }
    return comm_bcast_bytes_idle(world, (void **)line, len);
}

/* One request; *fatal = 1 when the job must end (a runtime failure). */
static void serve(comm_world *world, const driver_opts *o0, const driver_generate_opts *g0, policy_weights **w,
                  const tok_tokenizer *tok, const char *line, size_t len, int *fatal) {
    request r;
    driver_opts o = *o0;
    driver_generate_opts g = *g0;
    driver_generate_stats st = {0};
    policy_weights *nw = NULL;
    double t_w = 0.0;
    int help = 0;
    br_status rc = request_parse(line, len, &r);
    if (rc == BR_OK) rc = cli_generate_parse(r.argc, r.argv, &o, &g, &help);
    if (rc == BR_OK && help) rc = br_fail(BR_EINVAL, "request: --help is not a request (bitroll worker --help)");
    if (rc == BR_OK) rc = cli_generate_check(&o, &g);
    if (rc == BR_OK && world->rank == 0) rc = driver_check_out(o.out, "--prompts", g.prompts);
    if (rc == BR_OK && world->rank == 0) rc = cli_check_writable(o.out);
    rc = comm_agree(world, rc);
    if (rc == BR_OK && r.weights) {
        const double t0 = br_now_s();
        rc = driver_update_weights(world, *w, r.weights, r.fingerprint, &nw);
        t_w = br_now_s() - t0;
        if (rc == BR_OK) {
            policy_weights_free(*w);
            *w = nw;
        }
    } else if (rc == BR_OK && r.fingerprint && strcmp(r.fingerprint, (*w)->fingerprint_hex) != 0) {
        rc = br_fail(BR_EINVAL, "request: the worker holds weights %s, the request expects %s (no 'weights' given)",
                     (*w)->fingerprint_hex, r.fingerprint);
    }
    if (rc == BR_OK) rc = driver_generate_with(world, &o, &g, *w, tok, &st);
    if (world->rank == 0) {
        cJSON *j = answer_start(&r);
        cJSON_AddBoolToObject(j, "ok", rc == BR_OK);
        if (rc == BR_OK) {
            cJSON_AddStringToObject(j, "out", o.out);
            cJSON_AddStringToObject(j, "fingerprint", (*w)->fingerprint_hex);
            cJSON_AddNumberToObject(j, "weight_version", (double)o.weight_version);
            cJSON_AddNumberToObject(j, "samples", (double)st.samples);
            cJSON_AddNumberToObject(j, "tokens", (double)st.tokens);
            cJSON *s = cJSON_AddObjectToObject(j, "seconds");
            cJSON_AddNumberToObject(s, "weights", t_w);
            cJSON_AddNumberToObject(s, "generate", st.seconds);
        } else {
            cJSON_AddNumberToObject(j, "exit_code", br_exit_code(rc));
            cJSON_AddStringToObject(j, "error", br_last_error());
            fprintf(stderr, "bitroll worker: %s\n", br_last_error());
        }
        answer(j);
    }
    *fatal = rc != BR_OK && br_exit_code(rc) != 2;
    request_free(&r);
}

static int worker_main_mpi(comm_world *world, int argc, char **argv) {
    driver_opts o;
    driver_generate_opts g;
    cli_generate_defaults(&o, &g, "worker");
    policy_weights *w = NULL;
    tok_tokenizer *tok = NULL;
    int help = 0, code = 0;
    br_status rc = br_tuning_from_env(&o.tuning);
    if (rc == BR_OK) rc = cli_generate_parse(argc, argv, &o, &g, &help);
    if (rc == BR_OK && help) {
        if (world->rank == 0) usage(stdout);
        return 0;
    }
    if (rc == BR_OK && (g.prompts || o.out))
        rc = br_fail(BR_EINVAL, "%s is given per request, not at start-up (bitroll worker --help)",
                     g.prompts ? "--prompts" : "--out");
    if (rc == BR_OK) rc = rollout_sampling_check(&g.d.sampling, INT32_MAX);
    rc = comm_agree(world, rc);
    if (rc == BR_OK) rc = comm_agree(world, comm_watch_start(world, o.tuning.comm_timeout_s, "worker"));
    if (rc == BR_OK) rc = comm_agree(world, driver_bind_device(world, &o));
    if (rc == BR_OK) rc = comm_agree(world, comm_tp_split(world, o.tp));
    if (rc == BR_OK) rc = driver_load_weights(world, &o, &w);
    if (rc == BR_OK && !o.random_weights)
        rc = comm_agree(world, driver_load_tokenizer(o.model, g.tokenizer, w, &tok));
    if (rc != BR_OK) {
        code = cli_run_fail(world, "worker", rc);
        goto done;
    }
    if (world->rank == 0) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ready", 1);
        cJSON_AddStringToObject(j, "fingerprint", w->fingerprint_hex);
        cJSON_AddStringToObject(j, "model", o.random_weights ? o.random_weights : o.model);
        cJSON_AddStringToObject(j, "device", rollout_device_name(o.device));
        cJSON_AddStringToObject(j, "kernels", kern_mode_name(o.mode));
        cJSON_AddNumberToObject(j, "world_size", world->size);
        cJSON_AddNumberToObject(j, "tp", o.tp);
        answer(j);
    }
    for (;;) {
        char *line = NULL;
        size_t len = 0;
        next_line(world, &line, &len);
        if (len == 0) {
            free(line);
            break;
        }
        int fatal = 0;
        serve(world, &o, &g, &w, tok, line, len - 1, &fatal);
        free(line);
        if (fatal) {
            code = 3;
            break;
        }
    }
done:
    tok_free(tok);
    policy_weights_free(w);
    return code;
}

int cli_worker_main(int argc, char **argv) { return cli_with_mpi(argc, argv, worker_main_mpi); }
