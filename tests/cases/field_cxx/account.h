#include <string>
#include <vector>

class Ledger {
public:
	explicit Ledger(std::string owner) : owner_(std::move(owner)) {}
	void post(long cents);
	std::string summary() const;
private:
	std::string owner_;
	std::vector<long> entries_;
};
