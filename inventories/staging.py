"""Staging: one server that is both web and db host."""

web = [("staging.bideshgomon.com", {"private_ip": "10.30.0.11"})]
db = [("staging.bideshgomon.com", {"private_ip": "10.30.0.11"})]
