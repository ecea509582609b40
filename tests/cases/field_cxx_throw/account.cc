#include "account.h"
#include <numeric>
#include <sstream>
#include <stdexcept>

void Ledger::post(long cents)
{
	entries_.push_back(cents);
	if (entries_.size() > 4)
		entries_.erase(entries_.begin());
}

std::string Ledger::summary() const
{
	long total = std::accumulate(entries_.begin(), entries_.end(), 0L);
	std::ostringstream os;
	os << owner_ << ": " << total;
	return os.str();
}
