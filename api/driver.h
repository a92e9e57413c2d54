/* The drivers behind `bitroll generate` and `bitroll score` under mpirun (DESIGN 4-5): every rank runs the same
 * code; rank 0 reads the inputs and hands them to the others, each data-parallel group runs its round-robin share
 * of the jobs, rank 0 gathers the results in sample-id order and writes the file, so a file's datasets never depend
 * on the rank count. The CLI verbs parse options into driver_opts and call these; nothing here parses argv. */
#ifndef API_DRIVER_H
#define API_DRIVER_H

#include <stdint.h>

#include "comm/comm.h"
#include "common/tuning.h"
#include "logging/h5log.h"
#include "policy/policy.h"
#include "policy/tokenizer/tokenizer.h"
#include "rollout/requests.h"
#include "rollout/scheduler.h"

#ifndef BR_DEFAULT_MODEL
#define BR_DEFAULT_MODEL "configs/models/stories260K"
#endif

typedef struct {
    const char *verb;           /* "generate" | "score": messages and provenance */
    const char *model;          /* checkpoint directory */
    const char *random_weights; /* config.json of a random-weights model, instead of model */
    uint64_t weights_seed;
    int tp;                     /* tensor-parallel degree */
    const char *out;
    rollout_device device;
    kern_mode mode;
    rollout_sched_opts sched;   /* budgets (device/mode/tuning are filled from the fields here) */
    br_tuning tuning;
    int64_t weight_version;     /* recorded in the file (the trainer step that made the weights) */
    int allow_other_policy;     /* score: the model may differ from the one that generated the rollouts (PPO's later
                                 * minibatches); the scores file then records the scoring model and weight_version */
    int quiet, print_config;
    int resume;                 /* --resume: results already in the journal OUT.parts are not recomputed (not part of the
                                 * resolved configuration: a resumed file equals an uninterrupted one bit for bit) */
} driver_opts;

void driver_opts_default(driver_opts *o, const char *verb);

typedef struct {
    const char *prompts;   /* JSONL path */
    const char *tokenizer; /* tokenizer.json (or its directory); NULL: the model directory's, if any */
    rollout_defaults d;    /* per-run sampling defaults (requests may override per line) */
    int32_t stops[64];
    int n_stops;
    int no_stop;           /* --no-stop: no stop ids at all */
} driver_generate_opts;

/* Each returns BR_OK on every rank, or the same failure on every rank (agreed; rank 0 holds the message). */
br_status driver_generate(comm_world *world, const driver_opts *o, driver_generate_opts *g);
br_status driver_score(comm_world *world, const driver_opts *o, const char *rollouts);

/* generate with weights (and tokenizer, may be NULL) the caller already holds on every rank: the persistent worker
 * (bitroll worker) keeps them between requests. o->model / o->random_weights only name them in messages and in the
 * file's provenance. stats (rank 0; may be NULL) receives the run's figures. */
typedef struct {
    int64_t samples, tokens;
    double seconds; /* from the first job to the file written */
} driver_generate_stats;
br_status driver_generate_with(comm_world *world, const driver_opts *o, driver_generate_opts *g,
                               const policy_weights *w, const tok_tokenizer *tok, driver_generate_stats *stats);

/* The worker's weight update: rank 0 reads `path` (a .safetensors file of Hugging Face names, F32 or BF16, a subset
 * of base's tensors), broadcasts its bytes to every rank over comm/, and every rank builds *out = base with those
 * tensors replaced (policy_weights_update: the fingerprint is the one of base's checkpoint with them saved in).
 * Every rank's fingerprint must equal rank 0's, and rank 0's must equal `expect_hex` when given. Agreed. */
br_status driver_update_weights(comm_world *world, const policy_weights *base, const char *path,
                                const char *expect_hex, policy_weights **out);

/* ---- pieces the two drivers share (api/driver_common.c) */

/* Checks the device/mode pair, binds the rank to its GPU (comm_gpu rule) and installs the abort hook. */
br_status driver_bind_device(const comm_world *world, const driver_opts *o);
/* Checks --out before any work: a file path (h5log_check_out: absent or a regular file, never a device or directory)
 * that is not the input file `in_path` (compared by device and inode, so links and other spellings count). BR_EINVAL
 * naming --out and, for an alias, the input's flag. in_path may be NULL. */
br_status driver_check_out(const char *out, const char *in_flag, const char *in_path);
/* Loads the weights on every rank and checks that every rank holds the same fingerprint. */
br_status driver_load_weights(const comm_world *world, const driver_opts *o, policy_weights **w);
/* The tokenizer: path, else the model directory's tokenizer.json when it has one (else *tok = NULL). A tokenizer
 * whose vocabulary is larger or smaller than the model's is rejected up front (BR_EINVAL naming both sizes). */
br_status driver_load_tokenizer(const char *model, const char *path, const policy_weights *w, tok_tokenizer **tok);
/* The resolved configuration stored in every file (JSON; caller frees). */
char *driver_config_json(const driver_opts *o, const rollout_defaults *d, const char *prompts, const char *rollouts,
                         int world_size);
/* Fills p from o/w/cfg; the strings live in `bufs` (kept by the caller while p is used). */
typedef struct {
    char libs[256], device[300], mpi[512];
} driver_prov_bufs;
void driver_provenance(h5log_provenance *p, driver_prov_bufs *bufs, const driver_opts *o, const policy_weights *w,
                       const char *cfg, int world_size);
/* The jobs of a run, produced on demand (get fills *out for job i, 0 <= i < n), so that no array of every job need
 * exist: generate derives them from its requests, score wraps its array (driver_jobs_array). */
typedef struct {
    int64_t n;
    void (*get)(void *ctx, int64_t i, rollout_job *out);
    void *ctx;
} driver_jobs;
driver_jobs driver_jobs_array(const rollout_job *jobs, int64_t n);

typedef struct driver_parts driver_parts;
/* Runs this rank's share of jobs; rank 0 then opens the journal's index in *parts (NULL on the other ranks).
 * Results travel through the journal o->out.parts (below): each group's first rank appends each result as the
 * scheduler finishes it, and rank 0 indexes the shards after the run (every job's record checked). Without
 * o->resume a stale journal is removed first; with it, the jobs the journal already holds are not run again and the
 * others are dealt to this run's groups (driver_dealer: a prompt's samples together). A group runs its share in windows of at most
 * DRIVER_WINDOW_JOBS(device, max_seqs) jobs, so its memory does not grow with the share either. Progress (the whole
 * job's, summed over the groups) on rank 0's stderr unless quiet. The caller closes *parts (driver_parts_close) and
 * removes the journal (driver_out_done) once the output file is written. */
br_status driver_run_and_gather(const comm_world *world, const policy_weights *w, const driver_opts *o,
                                const driver_jobs *jobs, driver_parts **parts);
/* The dealing of a run's undone jobs to its groups, the same on every rank. Runs of consecutive jobs with the same
 * prompt (a request's n samples) go to one group whole, so that they share the prompt's KV pages, and the runs go
 * round-robin -- when there are at least as many runs as groups; else (few prompts, many samples) the jobs go
 * round-robin one by one, as they did before, so that every group gets work. init counts the runs (one pass, get()
 * on every undone job); next is called for each undone job in increasing order and returns its group. */
typedef struct {
    const driver_jobs *jobs;
    int n_groups, whole_runs;
    int64_t unit;     /* the current run (whole_runs) or job's index among the dealt units */
    rollout_job prev; /* the previous undone job */
    int have_prev;
} driver_dealer;
void driver_deal_init(driver_dealer *d, const driver_jobs *jobs, const uint8_t *done, int n_groups);
int driver_deal_next(driver_dealer *d, int64_t i);

/* Jobs handed to the scheduler at once (each window ends with a batch that drains, and makes its own engine): 64 x
 * max_seqs, at least 4096 on the CPU and 65536 on a GPU (whose max_seqs may be chosen later, from its memory).
 * 128 bytes a job: 0.5 MiB and 8 MiB. */
#define DRIVER_WINDOW_MIN(device) ((device) == ROLLOUT_DEVICE_CUDA ? (int64_t)65536 : (int64_t)4096)
#define DRIVER_WINDOW_JOBS(device, max_seqs)                                                                         \
    ((int64_t)(max_seqs) * 64 > DRIVER_WINDOW_MIN(device) ? (int64_t)(max_seqs) * 64 : DRIVER_WINDOW_MIN(device))

/* ---- the results journal (api/driver_journal.c; docs/FORMAT.md "Journal") */

typedef struct driver_journal driver_journal;
/* xxh64 of everything that determines the results: verb, weights fingerprint, kernel mode and, for every job, its
 * sample id, prompt ids, sampling parameters, max_new, stop ids and forced tokens (score). */
uint64_t driver_job_key(uint64_t weights_fp, const char *verb, int mode, const driver_jobs *jobs);
/* "OUT.parts" (caller frees; NULL when out of memory). */
char *driver_parts_dir(const char *out);
/* After OUT is written: removes OUT.parts. */
br_status driver_out_done(const char *out);
/* Creates the directory (an existing one is kept). */
br_status driver_parts_create(const char *dir);
/* Removes every shard g<group>.<attempt>.bin and the directory; an absent directory is BR_OK. */
br_status driver_parts_remove(const char *dir);
/* Reads every shard of dir: done[i] = 1 for each job with an intact record (n_jobs bytes, zeroed first); a torn or
 * damaged record ends its shard's reading. *next_attempt (may be NULL) = 1 + the highest attempt number found. A shard
 * of another job (job key or job count) is BR_EINVAL naming it and saying so. An absent directory holds nothing. */
br_status driver_parts_read(const char *dir, uint64_t key, int64_t n_jobs, uint8_t *done, int64_t *n_done,
                            int *next_attempt);
/* As driver_parts_read, keeping every shard open and where each job's (first intact) record is: 16 bytes a job, in
 * an unnamed file of dir read through a 64 KiB page (rank 0's memory does not grow with the jobs), and one record in
 * memory at a time while the checksums are checked. *n_done counts the jobs found; the others must not be asked for. */
#define DRIVER_PARTS_MAX_SHARDS 1024
br_status driver_parts_open(const char *dir, uint64_t key, int64_t n_jobs, driver_parts **out, int64_t *n_done);
typedef enum { DRIVER_PART_TOKENS, DRIVER_PART_LOGPROBS, DRIVER_PART_DIGESTS } driver_part;
/* Job's completion length (*n) and finish reason (*finish, br_finish); either may be NULL. Jobs asked for in
 * increasing order are cheapest (one page read per 4,096 jobs). */
br_status driver_parts_get(driver_parts *p, int64_t job, int32_t *n, int8_t *finish);
/* Elements [from, from + count) of job's tokens (int32), logprobs (float) or digests (uint64) into buf. */
br_status driver_parts_load(driver_parts *p, int64_t job, driver_part what, int64_t from, int64_t count, void *buf);
/* Closes the shards and frees; NULL is a no-op. */
void driver_parts_close(driver_parts *p);
/* Creates dir/g<group>.<attempt>.bin with its header. */
/* kill_after > 0 (the tests' fault injection, br_tuning.inject_kill_after_records): the process sends itself SIGKILL
 * once that many records are on disk. */
br_status driver_journal_open(const char *dir, int group, int attempt, uint64_t key, int64_t n_jobs,
                              int64_t kill_after, driver_journal **out);
/* Appends job's result as one checksummed record, flushed to the kernel before it returns. */
br_status driver_journal_append(driver_journal *j, uint64_t key, int64_t job, const rollout_result *r);
/* Closes and frees; NULL is a no-op. */
br_status driver_journal_close(driver_journal *j);

#endif
