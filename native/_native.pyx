# placeholder: the address-space allocator and rendezvous election land here (issue 2)
