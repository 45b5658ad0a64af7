"""Creates an SES sending identity (a domain) in the local AWS emulator, for
`cargo xtask bench --ses-outage`. moto marks it verified at once.

    .venv-moto/bin/python ses_identity.py <endpoint url> <domain>

Runs with the boto3 that comes with moto in .venv-moto (tests/aws/moto.sh install).
"""

import sys

import boto3

if len(sys.argv) != 3:
    sys.exit(__doc__)
endpoint, domain = sys.argv[1], sys.argv[2]
client = boto3.client(
    "sesv2",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
client.create_email_identity(EmailIdentity=domain)
print(f"SES identity {domain} created in {endpoint}")
