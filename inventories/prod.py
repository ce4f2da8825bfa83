"""Production: two web servers behind the load balancer and one database server."""

web = [
    ("web1.bideshgomon.com", {"private_ip": "10.20.0.11"}),
    ("web2.bideshgomon.com", {"private_ip": "10.20.0.12"}),
]
db = [
    ("db1.bideshgomon.com", {"private_ip": "10.20.0.21"}),
]
