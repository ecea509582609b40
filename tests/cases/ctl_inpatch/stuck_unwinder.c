/*
 * Preloaded by a live test (not part of the program): an unwinder whose
 * __register_frame never returns, as if another thread, stopped by
 * libcare-ctl, held libgcc's object lock. The patch must be rolled back
 * and the patient left running, untouched.
 */
#include <unistd.h>

void __register_frame(void *begin)
{
	(void)begin;
	for (;;)
		pause();
}

void __deregister_frame(void *begin)
{
	(void)begin;
}
