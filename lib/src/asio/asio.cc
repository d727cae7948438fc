int bulwark_asio_placeholder = 0;
