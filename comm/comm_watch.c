/* comm_watch: the rank watchdog -- a rank that stops or dies makes the others exit with its number instead of hanging
 * (docs/RELIABILITY.md "No silent hang"; comm.h). */
#include "comm/comm.h"

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Why a heartbeat thread and not deadlines on the collectives: a collective that waits long is not a sign of trouble
 * (rank 0 ends its share of the jobs and waits in comm_agree while rank 1 is still decoding its longer share), so
 * a deadline on the wait would either kill healthy jobs or be too long to help. A stopped or dead process, though,
 * stops every one of its threads: a thread that does nothing but heartbeats tells "busy" from "gone" whatever the
 * main thread is doing (computing, in an MPI collective, in a CUDA synchronize or an NCCL kernel).
 *
 * The ranks form a ring on a duplicate of MPI_COMM_WORLD: rank r sends a heartbeat to r - 1 every period and
 * watches r + 1 (mod size), so each rank is watched by exactly one other and the traffic is one small message per
 * rank and period whatever the size. Each heartbeat carries what its sender's main thread was doing (the last
 * collective it entered and its caller), so the report names the silent rank and where it was. A rank that is
 * finishing sends "bye" as its last message; its watcher stops expecting it, then finishes too once its own peer
 * said bye (comm_finalize), so every message is received and a rank that waits in MPI_Finalize for a slower peer is
 * not mistaken for a silent one. */

enum { HB_ALIVE = 1, HB_BYE = 2, HB_TAG = 4242 };

typedef struct {
    int32_t kind;    /* HB_ALIVE | HB_BYE */
    int32_t waiting; /* 1: the sender's main thread is inside `what` */
    char what[32];   /* the last collective its main thread entered ("" before the first) */
    char caller[64]; /* the function that called it */
} hb_msg;

typedef struct {
    int on;
    MPI_Comm comm;
    int rank, size, prev, next;
    double timeout, period;
    char verb[32];
    pthread_t thread;
    atomic_int stop;
    hb_msg send_buf, recv_buf; /* live as long as the process: a send is never left pointing at a freed buffer */
} watch_state;

static watch_state g_watch;
/* What the main thread is doing: string literals (static storage), so a pointer read is enough. */
static _Atomic(const char *) g_what, g_caller;
static atomic_int g_waiting;

void comm_watch_enter(const char *what, const char *caller) {
    atomic_store(&g_what, what);
    atomic_store(&g_caller, caller);
    atomic_store(&g_waiting, 1);
}

void comm_watch_leave(void) { atomic_store(&g_waiting, 0); }

double comm_watch_period(double timeout_s) {
    double p = timeout_s / 5.0;
    return p < 1.0 ? p : 1.0;
}

/* "waiting in comm_agree (from driver_run_and_gather)" / "working after comm_agree (from ...)" / "working". */
static void describe(int waiting, const char *what, const char *caller, char *buf, size_t cap) {
    if (!what || !*what) snprintf(buf, cap, "working (before its first collective)");
    else snprintf(buf, cap, "%s %s (from %s)", waiting ? "waiting in" : "working after", what,
                  caller && *caller ? caller : "?");
}

/* The main thread's step as last sent, so that a change goes out early (the report then says where the silent rank
 * really was, not where it was up to a period before). */
typedef struct {
    int waiting;
    const char *what, *caller;
} step;

static step step_now(void) {
    step x = {atomic_load(&g_waiting), atomic_load(&g_what), atomic_load(&g_caller)};
    return x;
}

static void fill(hb_msg *m, int kind, step x) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->waiting = x.waiting;
    snprintf(m->what, sizeof m->what, "%s", x.what ? x.what : "");
    snprintf(m->caller, sizeof m->caller, "%s", x.caller ? x.caller : "");
}

_Noreturn static void report_and_abort(const watch_state *s, const hb_msg *last, int heard) {
    char peer[160], mine[160];
    if (heard) describe(last->waiting, last->what, last->caller, peer, sizeof peer);
    else snprintf(peer, sizeof peer, "never heard from");
    describe(atomic_load(&g_waiting), atomic_load(&g_what), atomic_load(&g_caller), mine, sizeof mine);
    fprintf(stderr,
            "[rank %d] rank %d did not answer for %.0f s during %s: rank %d last reported %s; rank %d is %s. "
            "A stopped (SIGSTOP, debugger) or dead rank would hold the job forever: aborting every rank "
            "(--comm-timeout %.0f; 0 turns the watchdog off)\n",
            s->rank, s->next, s->timeout, s->verb, s->next, peer, s->rank, mine, s->timeout);
    fflush(stderr);
    /* MPI_THREAD_MULTIPLE: legal from this thread while the main thread sits in a collective. NCCL communicators are
     * not aborted from here (comm_nccl's list belongs to the main thread): MPI_Abort ends the processes, and with
     * them their communicators and kernels. */
    MPI_Abort(MPI_COMM_WORLD, 3);
    _Exit(3); /* not reached */
}

static void nap(double s) {
    struct timespec ts = {0, (long)(s * 1e9)};
    nanosleep(&ts, NULL);
}

static void *watch_main(void *arg) {
    watch_state *s = arg;
    MPI_Request rreq = MPI_REQUEST_NULL, sreq = MPI_REQUEST_NULL;
    hb_msg last = {0};
    int heard = 0, peer_bye = 0, sent_bye = 0;
    double last_heard = br_now_s(), last_sent = -1e30;
    const double tick = s->period / 10.0 < 0.01 ? s->period / 10.0 : 0.01;
    /* a changed step goes out at most every `soon` (a tensor-parallel decode changes it at every chunk sum) */
    const double soon = s->period / 10.0 < 0.1 ? s->period / 10.0 : 0.1;
    step sent = {0, NULL, NULL};
    MPI_Irecv(&s->recv_buf, (int)sizeof s->recv_buf, MPI_BYTE, s->next, HB_TAG, s->comm, &rreq);
    for (;;) {
        const int stopping = atomic_load(&s->stop);
        while (!peer_bye) {
            int got = 0;
            MPI_Test(&rreq, &got, MPI_STATUS_IGNORE);
            if (!got) break;
            last_heard = br_now_s();
            last = s->recv_buf;
            heard = 1;
            if (last.kind == HB_BYE) peer_bye = 1;
            else MPI_Irecv(&s->recv_buf, (int)sizeof s->recv_buf, MPI_BYTE, s->next, HB_TAG, s->comm, &rreq);
        }
        if (sreq != MPI_REQUEST_NULL) {
            int done = 0;
            MPI_Test(&sreq, &done, MPI_STATUS_IGNORE);
        }
        const double t = br_now_s();
        const step x = step_now();
        const int changed = x.waiting != sent.waiting || x.what != sent.what || x.caller != sent.caller;
        if (sreq == MPI_REQUEST_NULL && !sent_bye &&
            (stopping || t - last_sent >= s->period || (changed && t - last_sent >= soon))) {
            fill(&s->send_buf, stopping ? HB_BYE : HB_ALIVE, x);
            sent = x;
            MPI_Isend(&s->send_buf, (int)sizeof s->send_buf, MPI_BYTE, s->prev, HB_TAG, s->comm, &sreq);
            sent_bye = stopping;
            last_sent = t;
        }
        if (sent_bye && sreq == MPI_REQUEST_NULL && peer_bye) break;
        if (!peer_bye && t - last_heard > s->timeout) report_and_abort(s, &last, heard);
        nap(tick);
    }
    return NULL;
}

br_status comm_watch_start(const comm_world *w, int timeout_s, const char *verb) {
    if (g_watch.on || timeout_s <= 0 || w->size < 2) return BR_OK;
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE) {
        /* the same on every rank: no rank creates the ring */
        if (w->rank == 0)
            fprintf(stderr, "bitroll %s: warning: the MPI library gives no MPI_THREAD_MULTIPLE, so there is no rank "
                            "watchdog (--comm-timeout): a stopped rank would hang the job\n", verb);
        return BR_OK;
    }
    watch_state *s = &g_watch;
    memset(s, 0, sizeof *s);
    if (MPI_Comm_dup(MPI_COMM_WORLD, &s->comm) != MPI_SUCCESS)
        return br_fail(BR_ERUNTIME, "rank %d: --comm-timeout: MPI_Comm_dup failed", w->rank);
    MPI_Comm_rank(s->comm, &s->rank);
    MPI_Comm_size(s->comm, &s->size);
    s->prev = (s->rank + s->size - 1) % s->size;
    s->next = (s->rank + 1) % s->size;
    s->timeout = (double)timeout_s;
    s->period = comm_watch_period(s->timeout);
    snprintf(s->verb, sizeof s->verb, "%s", verb ? verb : "the run");
    atomic_store(&s->stop, 0);
    if (pthread_create(&s->thread, NULL, watch_main, s) != 0) {
        MPI_Comm_free(&s->comm);
        /* a rank without its thread would be reported silent by its watcher: the whole job must stop */
        comm_abort(w, 3, "comm_watch_start", "cannot start the watchdog thread");
    }
    s->on = 1;
    return BR_OK;
}

void comm_watch_stop(void) {
    watch_state *s = &g_watch;
    if (!s->on) return;
    comm_watch_enter("comm_finalize", "the end of the run");
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    comm_watch_leave();
    MPI_Comm_free(&s->comm);
    s->on = 0;
}
