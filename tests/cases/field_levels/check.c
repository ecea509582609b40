/* A quota check that two successive security updates tighten. */

int quota_ok(long used, long limit)
{
	return used <= limit;
}
