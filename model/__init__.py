# Python side of the model package: only model/reference lives here (the Go package ignores this file).
