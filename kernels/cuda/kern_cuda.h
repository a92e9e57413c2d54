/* C interface to the CUDA backend (the .cu files in kernels/cuda). Plain C: included by C11 code. */
#ifndef KERN_CUDA_H
#define KERN_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no driver or no device (never fails). */
int kern_cuda_device_count(void);
/* Name of device `dev` into buf (empty string when unavailable). */
void kern_cuda_device_name(int dev, char *buf, int len);

#ifdef __cplusplus
}
#endif
#endif
