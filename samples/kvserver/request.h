/* One request of kvserver's line protocol, split into its fields. */
#ifndef KVSERVER_REQUEST_H
#define KVSERVER_REQUEST_H

#define KEY_MAX 32
#define VALUE_MAX 128

struct request {
	char verb[8];
	char key[KEY_MAX];
	char value[VALUE_MAX];
};

/* Splits "VERB [KEY [VALUE]]" (the line without its newline) into r.
 * Returns 0, or -1 if a field does not fit. */
int parse_request(const char *line, struct request *r);

#endif
