/* The persistent worker's weight update (api/driver.h): a trainer's new weights reach every rank of a running
 * `mpirun bitroll worker` job through rank 0 and a comm/ broadcast, and every rank proves it holds the same bits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/driver.h"

br_status driver_update_weights(comm_world *world, const policy_weights *base, const char *path,
                                const char *expect_hex, policy_weights **out) {
    *out = NULL;
    char *bytes = NULL;
    size_t len = 0;
    policy_st *st = NULL;
    policy_tensor_update *u = NULL;
    br_status rc = BR_OK;
    if (world->rank == 0) rc = br_read_file(path, &bytes, &len);
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;
    comm_bcast_bytes(world, (void **)&bytes, &len);
    /* every rank parses the same bytes with the loader's checks (header, dtypes, sizes, offsets) */
    rc = policy_st_open_mem(path, bytes, len, &st);
    bytes = NULL; /* owned by st from here on */
    const int n = policy_st_count(st);
    if (rc == BR_OK && n == 0) rc = br_fail(BR_EINVAL, "%s: holds no tensors", path);
    if (rc == BR_OK && !(u = calloc((size_t)n, sizeof *u))) rc = br_fail(BR_ENOMEM, "%s: out of memory", path);
    for (int i = 0; rc == BR_OK && i < n; i++) {
        const st_tensor *t = policy_st_at(st, i);
        if (t->dtype != ST_F32 && t->dtype != ST_BF16)
            rc = br_fail(BR_EINVAL, "%s: tensor '%s' is %s; a weight update takes F32 or BF16", path, t->name,
                         t->dtype_name);
        u[i] = (policy_tensor_update){t->name, t->dtype, t->shape, t->ndim, t->data};
    }
    if (rc == BR_OK) rc = policy_weights_update(base, u, n, out);
    if (rc != BR_OK) rc = br_fail_ctx(rc, "weights %s", path);
    if ((rc = comm_agree(world, rc)) != BR_OK) goto done;
    uint64_t fp0 = (*out)->fingerprint;
    comm_bcast_u64(world, &fp0);
    if (fp0 != (*out)->fingerprint)
        rc = br_fail(BR_ERUNTIME, "rank %d: weights %s have fingerprint %s, rank 0's are %016llx", world->rank, path,
                     (*out)->fingerprint_hex, (unsigned long long)fp0);
    else if (expect_hex && strcmp(expect_hex, (*out)->fingerprint_hex) != 0)
        rc = br_fail(BR_EINVAL, "weights %s have fingerprint %s, the request expects %s (not the trainer's weights, "
                                "or another base checkpoint)", path, (*out)->fingerprint_hex, expect_hex);
    rc = comm_agree(world, rc);
done:
    if (rc != BR_OK) {
        policy_weights_free(*out);
        *out = NULL;
    }
    free(u);
    policy_st_free(st);
    free(bytes);
    return rc;
}
