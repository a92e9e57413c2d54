/* The structure check of format_version 1 rollouts/scores files (no integrity header, so no digest to trust): plain
 * reads, no libhdf5, before libhdf5 parses the file (docs/RELIABILITY.md, "Version 1 files: the structure check"). */
#ifndef H5V1_CHECK_H
#define H5V1_CHECK_H

#include <stdint.h>

#include "common/br.h"

/* Walks every structure libhdf5 1.10 touches when bitroll reads the HDF5 file at path (fsize bytes, no user block):
 * superblock v0, v1 object headers and their messages, group B-trees, symbol nodes and local heaps, chunk B-trees,
 * contiguous and chunked data extents, and global heap collections with every variable-length string reference
 * (attributes and datasets). BR_OK only when each is well-formed, inside the file, visited once, and in the subset
 * bitroll's writer (libhdf5's default file format) produces; otherwise BR_EFORMAT naming the file and the structure
 * and offset at fault, BR_EIO or BR_ENOMEM. Memory and time are bounded by fsize. */
br_status h5v1_check(const char *path, int64_t fsize);

#endif
