/* The request parser, on its own so that a fix to it is a small live patch:
 * the server's loop never returns and cannot be replaced, this function
 * returns after every request. */
#include <string.h>

#include "request.h"

/* Copies the n bytes at src into dst (cap bytes), NUL-terminated. */
static int copy_field(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		return -1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

int parse_request(const char *line, struct request *r)
{
	const char *end = line + strlen(line);
	const char *p = line;
	size_t n;

	memset(r, 0, sizeof *r);

	/* VERB: up to the first space. */
	n = strcspn(p, " ");
	if (copy_field(r->verb, sizeof r->verb, p, n))
		return -1;
	p += n;
	if (*p == ' ')
		p++;

	/* KEY: up to the next space. */
	n = strcspn(p, " ");
	if (copy_field(r->key, sizeof r->key, p, n))
		return -1;
	p += n;
	if (*p == ' ')
		p++;

	/* VALUE: the rest of the line, spaces included, without the
	 * newline. */
	n = (size_t)(end - p);
	if (n > 0)
		n--;
	return copy_field(r->value, sizeof r->value, p, n);
}
