terraform {
  # Ephemeral-free, write-only-free HCL: any Terraform or OpenTofu from 1.6 reads it.
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}
