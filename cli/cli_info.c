/* `bitroll info --model DIR`: what a checkpoint is (architecture, shapes, parameter count, dtypes,
 * fingerprint), after the same validation every other verb runs. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "policy/policy.h"
#include "cli/cli.h"

static void info_usage(FILE *f) {
    fprintf(f,
            "usage: bitroll info --model DIR [--json]\n"
            "\n"
            "Loads and validates a Hugging Face checkpoint (config.json + model.safetensors or a sharded\n"
            "model.safetensors.index.json) and prints its architecture, shapes, parameter count, dtypes and\n"
            "weights fingerprint (xxh3-64 of config.json and every tensor).\n"
            "\n"
            "  --model DIR   checkpoint directory\n"
            "  --json        print one JSON object instead of text\n"
            "  -h, --help    this help\n"
            "\n"
            "Exit: 0 ok, 2 bad or unreadable checkpoint (the message names the file and tensor).\n");
}

int cli_info_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model = NULL;
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'j': json = 1; break;
        case 'h': info_usage(stdout); return 0;
        default:
            fprintf(stderr, "bitroll info: unknown or incomplete option '%s'\n", argv[optind - 1]);
            info_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bitroll info: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model) {
        fprintf(stderr, "bitroll info: --model DIR is required\n");
        info_usage(stderr);
        return 2;
    }
    policy_weights *w = NULL;
    br_status rc = policy_weights_load(model, &w);
    if (rc != BR_OK) {
        fprintf(stderr, "bitroll info: %s\n", br_last_error());
        return br_exit_code(rc);
    }
    const policy_config *k = &w->cfg;
    if (json) {
        printf("{\"model\": \"%s\", \"model_type\": \"%s\", \"architecture\": \"%s\", \"hidden_size\": %d, "
               "\"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, "
               "\"vocab_size\": %d, \"context\": %d, \"tied_embeddings\": %s, \"dtype\": \"%s\", "
               "\"parameters\": %lld, \"fingerprint\": \"%s\"}\n",
               model, k->model_type, policy_arch_name(k->arch), k->dim, k->n_layers, k->n_heads, k->n_kv_heads,
               k->head_dim, k->ffn_dim, k->vocab, k->max_pos, k->tie_embeddings ? "true" : "false",
               kern_dtype_name(w->dtype), (long long)w->n_params, w->fingerprint_hex);
    } else {
        printf("model         %s\n", model);
        printf("architecture  %s (model_type %s)\n", policy_arch_name(k->arch), k->model_type);
        printf("layers        %d\n", k->n_layers);
        printf("hidden        %d\n", k->dim);
        printf("heads         %d query, %d key/value (head_dim %d%s)\n", k->n_heads, k->n_kv_heads, k->head_dim,
               k->n_kv_heads < k->n_heads ? ", GQA" : "");
        printf("mlp           %d (%s)\n", k->ffn_dim, k->act == POLICY_ACT_SILU_GLU ? "SwiGLU" : "GELU tanh");
        printf("norm          %s, eps %g%s\n", k->norm == POLICY_NORM_RMS ? "RMSNorm" : "LayerNorm", k->norm_eps,
               k->qk_norm ? ", q/k RMSNorm" : "");
        if (k->learned_pos)
            printf("positions     learned, %d\n", k->max_pos);
        else
            printf("positions     RoPE theta %g, context %d\n", k->rope_theta, k->max_pos);
        printf("vocab         %d\n", k->vocab);
        printf("embeddings    %s\n", k->tie_embeddings ? "tied" : "untied");
        printf("dtype         %s\n", kern_dtype_name(w->dtype));
        printf("parameters    %lld\n", (long long)w->n_params);
        printf("fingerprint   %s\n", w->fingerprint_hex);
    }
    policy_weights_free(w);
    return 0;
}
