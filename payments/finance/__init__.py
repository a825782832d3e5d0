"""The finance console at /finance: server-rendered pages where finance officers and
administrators sign in, see the money, import settlement files, work through the breaks and
download the reports, every action written to the audit log."""
