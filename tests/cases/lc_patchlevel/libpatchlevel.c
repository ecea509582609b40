/*
 * LibCare's patchlevel shape: a library and its program, both patched at
 * level 1, then both replaced by level 2. The library's format string is a
 * file-static pointer of .data (see lc_ref_rodata for why that matters).
 */
#include <stdio.h>

static const char *msg = "Hello from %s shared library";

const char *greeting(char *buf, size_t n)
{
	snprintf(buf, n, msg, "UNPATCHED");
	return buf;
}
