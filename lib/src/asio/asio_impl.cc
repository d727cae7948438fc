// The one translation unit that compiles Boost.Asio itself (BOOST_ASIO_SEPARATE_COMPILATION):
// every other file that includes Asio only sees declarations, which keeps builds fast.
#include <boost/asio/impl/src.hpp>
