/* Why a sample ended: the one definition (the scheduler sets it, rollouts files store it as int8 with the
 * attribute BR_FINISH_ENUM, the public API exposes it as bitroll_finish with the same values). */
#ifndef COMMON_FINISH_H
#define COMMON_FINISH_H

typedef enum {
    BR_FINISH_STOP = 0,    /* a stop token was sampled (it is the completion's last token) */
    BR_FINISH_LENGTH = 1,  /* max_new_tokens reached (score jobs always report it) */
    BR_FINISH_CONTEXT = 2, /* the model's context limit reached */
} br_finish;
#define BR_FINISH_COUNT 3
#define BR_FINISH_ENUM "0=stop,1=length,2=context"

/* "stop", "length", "context"; "?" for any other value. */
static inline const char *br_finish_name(int f) {
    return f == BR_FINISH_STOP ? "stop" : f == BR_FINISH_LENGTH ? "length" : f == BR_FINISH_CONTEXT ? "context" : "?";
}

#endif
