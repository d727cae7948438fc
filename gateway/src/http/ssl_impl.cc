// The one translation unit that compiles Boost.Asio's SSL support (the rest of Asio is compiled
// in libbulwark's asio_impl.cc; BOOST_ASIO_SEPARATE_COMPILATION): TLS on the gateway's client and
// upstream connections (http/stream.h) and their contexts.
#include <boost/asio/ssl/impl/src.hpp>
