module github.com/livemap/servicemap

go 1.26.8
