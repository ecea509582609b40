#include <stdio.h>

void answer(const char *req, char *out, size_t n)
{
	snprintf(out, n, "got %s", req);
}
